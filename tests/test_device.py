"""Device names and the CPU allocator setting."""

from __future__ import annotations

import platform

import pytest
import torch

from ramlab.device import resolve_device, reuse_freed_memory
from ramlab.errors import RamlabError


@pytest.mark.parametrize("cuda", [True, False])
def test_auto_takes_cuda_where_it_is_and_the_cpu_where_not(cuda: bool, monkeypatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto").type == ("cuda" if cuda else "cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda0", "cuda:", "cuda:x", "cudas"])
def test_a_wrong_device_lists_the_valid_ones(name: str) -> None:
    # a mistyped CUDA device is named as unknown, not as CUDA being missing (or torch's traceback)
    with pytest.raises(RamlabError, match=f"unknown device '{name}'; valid: auto, cpu, cuda, cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_says_what_to_use(name: str, monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(RamlabError, match="CUDA is not available; use --device cpu"):
        resolve_device(name)


def test_cuda_hidden_by_an_empty_cuda_visible_devices_says_so(monkeypatch) -> None:
    # A study's local or Ray executor hides the GPUs from a job without --gpus-per-job: a
    # preset asking for cuda then failed every job with "use --device cpu", not the real fix.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        RamlabError, match=r"CUDA_VISIBLE_DEVICES is empty.*--gpus-per-job F\); use --device cpu"
    ):
        resolve_device("cuda")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_allocator_setting_applies_on_glibc() -> None:
    assert reuse_freed_memory() is True
    # Allocation still works and memory is still zeroed where asked.
    assert torch.zeros(1 << 22).abs().sum().item() == 0.0


def test_a_cuda_index_beyond_the_visible_gpus_is_a_clear_error(monkeypatch) -> None:
    # torch accepts torch.device("cuda:7") and fails later with a traceback ("invalid device
    # ordinal"); a study's jobs see only their own GPU, as cuda:0.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        RamlabError, match=r"'cuda:1' requested but this process sees 1 GPU\(s\), cuda:0..cuda:0"
    ):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
