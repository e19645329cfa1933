"""Device and thread selection (`--device auto` uses CUDA when present)."""

from __future__ import annotations

import torch

from ramlab.errors import RamlabError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RamlabError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise RamlabError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
