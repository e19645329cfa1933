"""Smoke tests on CUDA, end to end through the CLI on tiny synthetic MNIST: training (eager
and through the compiled fast path, with CUDA graphs), then evaluation, robustness,
glimpses and cost, and a tiny study. Every test is marked `gpu`: skipped without CUDA
(tests/conftest.py); run them with `pytest -m gpu` on a GPU machine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tiny
import torch
import yaml
from test_cli_train import TINY as TINY_CPU
from test_trainer import straight_and_resumed, tiny_config, weights

from ramlab import robustness
from ramlab.checkpoint import load_checkpoint
from ramlab.cli import main
from ramlab.cost import measure_cost

pytestmark = pytest.mark.gpu

# test_cli_train's tiny run, on CUDA and logging every step.
TINY = [*(value if value != "cpu" else "cuda" for value in TINY_CPU), "--log-every", "1"]
TINY_RESNET = {"widths": [4], "depths": [1], "strides": [1]}


@pytest.fixture(autouse=True)
def fresh_scene_memo():
    """The robustness sweep keeps shifted scenes in memory; each test starts from its own."""
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


def train(out: Path, *extra: str) -> dict:
    """`ramlab train ram` on CUDA into `out`; its result.json."""
    assert main(["train", "ram", "--data", "translated60", *TINY, *extra, "--out", str(out)]) == 0
    return json.loads((out / "result.json").read_text())


def train_losses(run: Path) -> list[float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["train/loss"] for line in lines if "train/loss" in line]


def test_train_then_eval_robustness_glimpses_on_cuda(fake_mnist, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    result = train(run, "--reward", "sparse+infogain+0.5*bbox")
    assert result["device"] == "cuda"
    assert math.isfinite(result["test_error"]) and math.isfinite(result["val_error"])
    assert all(math.isfinite(loss) for loss in train_losses(run))
    capsys.readouterr()

    assert main(["eval", str(run), "--device", "cuda", "--sample", "--rollouts", "2"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert (evaluation["count"], evaluation["rollouts"]) == (20, 2)
    assert len(evaluation["per_step_error"]) == 2

    # Noise 0 on the whole test split is the run's own test set: the policy mean's error on it.
    assert main(["eval", str(run), "--device", "cuda"]) == 0
    whole = json.loads(capsys.readouterr().out)
    sweep = tmp_path / "robustness.json"
    levels = ["--shift", "noise", "--levels", "0", "0.3"]
    assert main(["robustness", str(run), *levels, "--device", "cuda", "--json", str(sweep)]) == 0
    saved = json.loads(sweep.read_text())
    assert saved["shifts"]["noise"]["count"] == whole["count"] == 20
    assert saved["shifts"]["noise"]["error"][0] == pytest.approx(whole["error"])
    assert all(math.isfinite(e) for e in saved["shifts"]["noise"]["error"])

    png, gif = tmp_path / "g.png", tmp_path / "g.gif"
    args = ["--out", str(png), "--gif", str(gif), "--count", "2", "--device", "cuda"]
    assert main(["glimpses", str(run), *args]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and gif.read_bytes()[:4] == b"GIF8"


@pytest.mark.slow
def test_compiled_training_on_cuda_follows_the_eager_one(fake_mnist, tmp_path, capsys) -> None:
    # Same seed, so the same weights and the same draws of CUDA's generator (the fast path
    # draws them eagerly, in the eager pass's order): the losses agree to float rounding.
    train(tmp_path / "eager", "--core", "lstm")
    compiled = train(tmp_path / "compiled", "--core", "lstm", "--compile", "true")
    assert compiled["device"] == "cuda" and compiled["config"]["train"]["compile"] is True
    expected, got = train_losses(tmp_path / "eager"), train_losses(tmp_path / "compiled")
    assert len(got) == len(expected) == 2
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-5)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "compiled"), "--device", "cuda"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 20


def test_compiled_training_on_cuda_between_logged_steps(fake_mnist, tmp_path) -> None:
    # Steps not logged keep their loss unread on the GPU until a logged one: a compiled
    # step's loss is CUDA-graph memory the next replay overwrites, so the check holds a copy
    # (it kept a view, which the next step's read would raise on).
    result = train(
        tmp_path / "run", "--core", "lstm", "--compile", "true", "--epochs", "3", "--log-every", "4"
    )
    assert result["steps"] == 6 and math.isfinite(result["val_error"])


def test_an_interrupted_cuda_run_resumes_with_the_draws_it_would_have_made(
    fake_mnist, tmp_path, monkeypatch
) -> None:
    # The rollouts' generator on the GPU is saved mid-epoch and restored (test_trainer checks
    # the same path on a CPU bit for bit); here up to the GPU kernels' rounding.
    config = tiny_config(device="cuda", checkpoint_every=1)
    a, b = straight_and_resumed(config, tmp_path, monkeypatch, interrupt_at=5)
    assert load_checkpoint(b / "last.pt")["sample_generator"] is not None
    straight, resumed = weights(a / "last.pt"), weights(b / "last.pt")
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], rtol=1e-4, atol=1e-6), name


def test_cost_on_cuda(tmp_path, capsys) -> None:
    path = tmp_path / "cost.json"
    args = ["--models", "ram,resnet", "--sizes", "28,100", "--repeats", "1", "--batch", "64"]
    assert main(["cost", *args, "--device", "cuda", "--json", str(path)]) == 0
    assert "ResNet / RAM" in capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    assert [(r["model"], r["size"], r["device"]) for r in rows] == [
        ("ram", 28, "cuda"),
        ("ram", 100, "cuda"),
        ("resnet", 28, "cuda"),
        ("resnet", 100, "cuda"),
    ]
    for row in rows:
        assert row["throughput"] > 0 and row["latency_ms"] > 0 and row["peak_memory_mb"] > 0


@pytest.mark.parametrize("model", ["ram", "resnet"])
def test_peak_memory_on_cuda_counts_what_the_cpu_counts(model: str) -> None:
    # Weights, input and the pass's activations, as the CPU's storage tracker counts them; not
    # the throughput batch held beside them (256 images of 100x100: 9.8 MiB).
    on_gpu = measure_cost(model, 100, device="cuda", batch=256, repeats=1)
    on_cpu = measure_cost(model, 100, device="cpu", batch=256, repeats=1)
    assert on_gpu["throughput_batch"] == 256
    assert on_gpu["peak_memory_mb"] == pytest.approx(on_cpu["peak_memory_mb"], rel=0.25, abs=0.5)


@pytest.mark.slow
def test_tiny_study_on_cuda(fake_mnist, tmp_path, capsys) -> None:
    ram = {**tiny.TINY_RAM, "glimpses": 2}
    preset = {
        "seeds": 1,
        "device": "cuda",
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "train_limit": 16,
            "eval_limit": 8,
            "threads": 1,
            "progress": False,
        },
        "runs": [
            {"name": "ram", "model": "ram", "data": "translated60", "model_config": ram},
            {"name": "resnet", "model": "resnet", "data": "translated60", "model_config": TINY_RESNET},
        ],
        "evaluate": {"glimpses": 2, "sampled": True},
        "robustness": [{"runs": "all", "shifts": {"rotate": [0, 45]}, "limit": 8}],
        "cost": {
            "models": ["ram", "resnet"],
            "sizes": [28, 60],
            "batch": 2,
            "device": "cuda",
            "configs": {"ram": {**tiny.TINY_RAM_COST, "glimpses": 2}, "resnet": TINY_RESNET},
        },
    }
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    out = tmp_path / "study"
    assert main(["study", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    for name in ("ram-translated60-seed0", "resnet-translated60-seed0"):
        run = out / "runs" / name
        assert json.loads((run / "result.json").read_text())["device"] == "cuda"
        assert (run / "eval.json").is_file() and (run / "robustness.json").is_file()
    rows = json.loads((out / "cost.json").read_text())["rows"]
    assert {r["device"] for r in rows} == {"cuda"} and len(rows) == 4
    assert "## Compute cost" in (out / "report.md").read_text()


def test_the_weight_average_and_the_box_reward_never_wait_for_the_gpu() -> None:
    from types import SimpleNamespace

    from ramlab.averaging import WeightAverage
    from ramlab.rewards import bbox_reward
    from ramlab.runconfig import build_run_model

    model = build_run_model(tiny_config(), "cuda")
    average = WeightAverage(model, 0.998)
    rollout = SimpleNamespace(locations=torch.rand(8, 6, 2, device="cuda") * 2 - 1, image_size=(60, 60))
    bboxes = torch.tensor([[10, 12, 30, 40]] * 8, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # a host sync raises
    try:
        for _ in range(3):
            average.update(model)
        reward = bbox_reward(rollout, None, bboxes)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert average.count == 3 and reward.shape == (8, 6) and bool((reward <= 0).all())


def test_glimpse_figures_on_cuda_share_evaluates_random_first_locations(fake_mnist) -> None:
    from ramlab.data.datasets import load_split
    from ramlab.data.loader import SceneLoader
    from ramlab.evaluate import evaluate
    from ramlab.models import build_model
    from ramlab.viz.glimpses import trajectories, where_glimpses_go

    scenes = load_split("translated60", "test", limit=8)
    torch.manual_seed(0)
    config = {**tiny.TINY_RAM, "glimpses": 3, "first_location": "random"}
    ram = build_model("ram", config, image_size=(60, 60)).eval()
    on_cpu = trajectories(ram, scenes).locations[:, 0]
    ram = ram.cuda()
    where = where_glimpses_go(ram, SceneLoader(scenes, batch_size=3, device="cuda"))
    evaluation = evaluate(ram, SceneLoader(scenes, batch_size=5, device="cuda"))
    assert where["inside_bbox_percent"] == pytest.approx(evaluation.in_box, abs=1e-9)
    assert trajectories(ram, scenes).locations[:, 0] == pytest.approx(on_cpu, abs=1e-6)


def test_the_error_breakdown_runs_on_a_gpus_split() -> None:
    # The boxes' and the bins' arithmetic met CPU tensors: an error on a split held on a GPU.
    from ramlab.breakdown import bins, scene_outcomes
    from ramlab.models.ram import RAM, RAMConfig

    torch.manual_seed(0)
    model = RAM(config=RAMConfig(**tiny.TINY_RAM, glimpses=2), image_size=(60, 60)).cuda()
    images = torch.rand(5, 1, 60, 60, device="cuda")
    boxes = torch.tensor([[10, 10, 38, 38]] * 5, device="cuda")
    out = scene_outcomes(model, images, torch.arange(5, device="cuda"), boxes, batch_size=2)
    assert out.offset_px.device.type == "cuda" and len(out.wrong) == 5
    index, names = bins(out.offset_px, [0, 5, 10])
    assert index.device.type == "cuda" and names == ["0-5", "5-10", "10+"]
