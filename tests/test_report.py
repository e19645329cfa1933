"""The report, built from hand-written run files with known numbers: every section, table and
figure, values read from the files (mean ± std over seeds, the paper's numbers, provenance),
a self-contained HTML page, and no model or checkpoint ever loaded."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ramlab.cli import main
from ramlab.config import to_dict
from ramlab.models.ram import RAMConfig
from ramlab.report import find_runs, write_report
from ramlab.robustness import FORMAT
from ramlab.runconfig import TrainConfig

COMMIT = "abc123def4567890abc123def4567890abc123de"


def write_run(
    root: Path,
    name: str,
    *,
    model: str,
    data: str,
    seed: int,
    error: float | None,
    model_config: dict | None = None,
    steps: list[float] | None = None,
    rotate: list[float] | None = None,
    glimpses: bool = False,
    sweep_format: int = FORMAT,
) -> Path:
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    config = {
        "model": model,
        "data": data,
        "train": to_dict(TrainConfig(seed=seed, epochs=2)),
        "model_config": model_config or {},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = [
        {"step": 1, "epoch": 0.5, "train/loss": 2.0, "train/error": 80.0, "policy/reward": 0.1},
        {"step": 2, "epoch": 1, "val/error": 60.0 + seed, "val/per_step_error": [70.0, 60.0]},
        {"step": 3, "epoch": 1.5, "train/loss": 1.5, "train/error": 50.0, "policy/reward": 0.4},
        {"step": 4, "epoch": 2, "val/error": 40.0 + seed, "val/per_step_error": [50.0, 40.0]},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if error is None:  # unfinished
        return folder
    result = {
        "model": model,
        "data": data,
        "test_error": error,
        "val_error": 40.0 + seed,
        "per_glimpse_test_error": steps or [error],
        "test_count": 10000,
        "params": 12345,
        "epochs": 2,
        "best_epoch": 2,
        "train_seconds": 90.0,
        "seed": seed,
        "commit": COMMIT,
        "command": f"ramlab train {model} --seed {seed}",
        "config": config,
    }
    (folder / "result.json").write_text(json.dumps(result))
    evaluation = {"params": 12345, "flops": 3_000_000, "flops_breakdown": {"all": 3_000_000}}
    if steps:
        evaluation["sampled"] = {"error": error + 1.0}
        evaluation["where"] = {
            "inside_bbox_percent": [10.0, 50.0 + seed],
            "distance_to_bbox_px": [8.0, 2.0],
            "count": 10000,
        }
    (folder / "eval.json").write_text(json.dumps(evaluation))
    if rotate:
        sweep = {
            "run": str(folder),
            "model": model,
            "data": data,
            "format": sweep_format,
            "limit": 100,
            "sample": False,
            "commit": COMMIT,
            "command": "ramlab robustness",
            "shifts": {
                "rotate": {
                    "parameter": "rotation",
                    "label": "rotation (degrees)",
                    "trained": [0.0, 0.0],
                    "levels": [0.0, 30.0],
                    "error": rotate,
                    "per_step_error": [[e] for e in rotate],
                    "count": 100,
                }
            },
        }
        (folder / "robustness.json").write_text(json.dumps(sweep))
    if glimpses:
        Image.new("RGB", (20, 10), "white").save(folder / "glimpses.png")
        frames = [Image.new("RGB", (20, 10), c) for c in ("white", "black")]
        frames[0].save(folder / "glimpses.gif", save_all=True, append_images=frames[1:], duration=100)
    return folder


def make_study(root: Path) -> Path:
    ram6 = to_dict(RAMConfig(glimpses=6, reward="sparse"))
    bbox = to_dict(RAMConfig(glimpses=6, reward="sparse+bbox"))
    for seed, error, rotate in ((0, 10.0, [10.0, 40.0]), (1, 14.0, [14.0, 50.0])):
        write_run(
            root,
            f"ram-sparse-translated60-seed{seed}",
            model="ram",
            data="translated60",
            seed=seed,
            error=error,
            model_config=ram6,
            steps=[30.0, 20.0, error],
            rotate=rotate,
            glimpses=seed == 0,
            sweep_format=1 if seed else FORMAT,  # seed 1's sweep predates the random subset
        )
    write_run(
        root,
        "ram-bbox-translated60-seed0",
        model="ram",
        data="translated60",
        seed=0,
        error=9.5,
        model_config=bbox,
        steps=[25.0, 15.0, 9.5],
        rotate=[9.5, 30.0],
        glimpses=True,
    )
    write_run(
        root,
        "resnet-translated60-seed0",
        model="resnet",
        data="translated60",
        seed=0,
        error=5.25,
        rotate=[5.25, 60.0],
    )
    write_run(root, "fc-translated60-seed0", model="fc", data="translated60", seed=0, error=20.0)
    write_run(root, "convnet-mnist-seed0", model="convnet", data="mnist", seed=0, error=3.0)
    write_run(
        root,
        "ram-late-translated60-seed0",
        model="ram",
        data="translated60",
        seed=0,
        error=None,
        model_config=bbox,
    )
    rows = [
        {
            "model": model,
            "size": size,
            "params": 1000 * (1 + (model == "resnet")),
            "flops": flops,
            "flops_breakdown": {"retina": flops // 2, "rest": flops - flops // 2},
            "latency_ms": 1.5,
            "throughput": 2000.0,
            "throughput_batch": 64,
            "peak_memory_mb": 0.5,
            "device": "cpu",
            "config": {},
        }
        for model, size, flops in (
            ("ram", 28, 2_000_000),
            ("ram", 60, 3_000_000),
            ("resnet", 28, 3_000_000),
            ("resnet", 60, 12_600_000),
        )
    ]
    (root / "cost.json").write_text(json.dumps({"rows": rows}))
    job = {"job": "cost", "kind": "cost", "commit": COMMIT, "command": "ramlab study quick"}
    (root / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    (root / "study.yaml").write_text(yaml.safe_dump({"description": "A hand-made study.", "runs": []}))
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The hand-made study with its report written once (figures take seconds), while
    loading a model or a checkpoint fails: the report must read files only."""
    import torch

    import ramlab.run

    def forbidden(*args, **kwargs):
        raise AssertionError("the report must read files, not load models")

    root = make_study(tmp_path_factory.mktemp("report") / "study")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ramlab.run, "load_run", forbidden)
        patch.setattr(torch, "load", forbidden)
        write_report(root)
    return root


def table_row(report: str, start: str) -> list[str]:
    """The cells of the first table row whose first cell is `start`."""
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == start:
            return cells
    raise AssertionError(f"no row starting with {start!r}")


def test_report_holds_every_section_with_the_runs_numbers(study):
    report = (study / "report.md").read_text()
    for heading in (
        "# ramlab study report",
        "## Test error per dataset and model",
        "### translated60",
        "### mnist",
        "## Compute cost",
        "## Robustness to shifts not seen in training",
        "## Reward structures",
        "## Glimpse trajectories",
        "## Provenance",
    ):
        assert heading in report, heading
    assert "A hand-made study." in report
    assert report.index("### mnist") < report.index("### translated60")  # the paper's order

    # Error table: mean ± sample std over seeds, the paper beside, the runs named.
    sparse = table_row(report, "`ram (reward=sparse)`")
    assert sparse[1:5] == ["12.00 ± 2.83", "13.00 ± 2.83", "2", "1.22"]
    assert sparse[-2] == "policy mean, one rollout"  # how the test error was measured
    assert sparse[5:7] == ["10000", "±0.32"]  # √(0.12 × 0.88 / 10,000) = 0.325 points
    assert table_row(report, "`resnet`")[6] == "±0.22"  # √(0.0525 × 0.9475 / 10,000) = 0.223
    assert "[ram-sparse-translated60-seed0](#run-runs-ram-sparse-translated60-seed0)" in sparse[-1]
    assert "[ram-sparse-translated60-seed1](#run-runs-ram-sparse-translated60-seed1)" in sparse[-1]
    assert table_row(report, "`ram (reward=sparse+bbox)`")[1:5] == ["9.50", "10.50", "1", "1.22"]
    assert table_row(report, "`resnet`")[1:5] == ["5.25", "—", "1", "—"]
    assert table_row(report, "`resnet`")[-2] == "one forward pass"  # its file says "policy mean"
    assert table_row(report, "`fc`")[1:5] == ["20.00", "—", "1", "2.63"]
    assert table_row(report, "`convnet`")[1:5] == ["3.00", "—", "1", "1.21"]
    assert (
        "No result.json (training, stopped or failed; left out of the tables): `runs/ram-late-translated60-seed0`"
        in report
    )

    # Cost table and provenance of the measurement.
    cost = report[report.index("## Compute cost") :]
    assert table_row(cost, "`ram`")[1:5] == ["28", "1 k", "2 M", "1.5"]
    assert table_row(cost, "`resnet`")[1:4] == ["28", "2 k", "3 M"]
    assert "| `resnet` | 60 | 2 k | 12.6 M |" in cost
    assert "Measured by `ramlab study quick` at commit `" + COMMIT + "`" in report
    assert "| 60 | 4.2× | 2× | 1× | 1× | 1× |" in cost  # ResNet over RAM at 60 px
    # The trained models' FLOPs (eval.json, 3 M each here) against the rows at their canvas:
    # the RAMs on translated60 match their 60 px row; the ResNet is named (models without a
    # row, fc and convnet, are not).
    note = cost[cost.index("**These rows are not the trained models**") :].split("\n\n")[0]
    assert note.startswith(
        "**These rows are not the trained models**: `resnet` on translated60 (60 px) 3 M FLOPs "
        "per image, its row 12.6 M. "
    )

    # Robustness: per level, mean ± std over the seeds of one kind of sweep. Seed 1's sweep read
    # the first 100 test digits (format 1), seed 0's a random 100: never averaged together, and
    # each table counts its one seed against the group's two.
    block = report[report.index("**rotate**") :]
    assert table_row(block, "`ram (reward=sparse)`")[1:3] == ["10.0 (n=1)", "40.0 (n=1)"]
    assert "| model | 0 (trained) | 30 | runs |" in block  # every sweep trained at 0°
    assert table_row(block, "`resnet`")[1:3] == ["5.2", "60.0"]
    older = report[report.index("*test split, its first 100 digits (an older sweep)") :]
    # Its levels were drawn anew each (before format 5), the current sweeps' are paired.
    assert older.startswith(
        "*test split, its first 100 digits (an older sweep), policy mean, one rollout; each "
        "level's scenes drawn anew (before format 5)*"
    )
    assert (
        "*test split, 100 of its digits, models with glimpses: policy mean, one rollout; the others: "
        in report
    )
    assert report.count("scenes drawn anew (before format 5)") == 1
    assert table_row(older, "`ram (reward=sparse)`")[1:3] == ["14.0 (n=1)", "50.0 (n=1)"]
    assert "ram-sparse-translated60-seed0" not in table_row(older, "`ram (reward=sparse)`")[-1]
    robustness = report[report.index("## Robustness to shifts") : report.index("## Reward structures")]
    assert (
        "Older sweeps read the first N digits of MNIST's test file instead, whose first half " in robustness
    )
    assert "the harder one: `runs/ram-sparse-translated60-seed1`." in robustness

    # Rewards: the two reward structures, learning speed and where the glimpses go.
    rewards = report[report.index("## Reward structures") :]
    row = table_row(rewards, "`sparse`")
    # Both seeds' best val errors are 40 and 41: the bar is 2 x 40.5 = 81, passed at epoch 1.
    assert row[2:10] == [
        "12.00 ± 2.83",
        "—",
        "2",
        "60.5 ± 0.7",
        "2.0 ± 0.0",
        "1.0 ± 0.0",
        "50.5 ± 0.7",  # the glimpses the policy placed (the second): 50 and 51, not the first's 10
        "2.0 ± 0.0",
    ]
    assert table_row(rewards, "`sparse+bbox`")[2:5] == ["9.50", "—", "1"]
    assert table_row(rewards, "`sparse+bbox`")[7] == "1.0"  # against the sparse runs' bar of 81
    assert (
        "`ram (reward=sparse+bbox)` against `ram (reward=sparse)`: mean test error 9.50 % against "
        "12.00 %; not testable with one seed (1 + 2 seeds)" in rewards
    )
    assert "Skipped runs" not in report

    # Provenance: every run (finished or not) with seed, commit, command and its config.
    provenance = report[report.index("## Provenance") :]
    row = table_row(
        provenance, '<a id="run-runs-ram-sparse-translated60-seed1"></a>`runs/ram-sparse-translated60-seed1`'
    )
    assert row[1:6] == ["`ram`", "translated60", "1", f"`{COMMIT[:12]}`", "`ramlab train ram --seed 1`"]
    assert "[config.yaml](runs/ram-sparse-translated60-seed1/config.yaml)" in row[6]
    assert provenance.count("<details><summary>config of ") == 7

    # Figures: every one exists, the glimpse figures are the runs' own files.
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    for name in ("anytime-translated60", "training-translated60", "training-mnist", "cost", "error-vs-flops"):
        assert f"report_files/{name}.png" in figures
    assert "report_files/robustness-translated60.png" in figures
    assert "report_files/rewards-translated60.png" in figures
    assert "runs/ram-sparse-translated60-seed0/glimpses.gif" in figures
    # The anytime figure says which RAMs were never trained to answer before the last glimpse.
    assert (
        "`ram (reward=sparse)`, `ram (reward=sparse+bbox)` trained the classifier on the last "
        "glimpse's answer only (ce_all_steps false)" in report
    )
    assert "runs/ram-bbox-translated60-seed0/glimpses.png" in figures
    for figure in figures:
        assert (study / figure).read_bytes()[:4] in (b"\x89PNG", b"GIF8")


def test_html_is_self_contained_and_its_links_resolve(study):
    page = (study / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    markdown_figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (study / "report.md").read_text())
    assert len(sources) == len(markdown_figures)
    for source in sources:
        kind, data = re.match(r"data:image/(png|gif);base64,(.+)", source).groups()
        assert base64.b64decode(data)[:4] == (b"\x89PNG" if kind == "png" else b"GIF8")
    for target in set(re.findall(r'href="#([^"]+)"', page)):
        assert f'id="{target}"' in page, target
    assert "<table>" in page and "12.00 ± 2.83" in page
    assert "&lt;a id=" not in page  # anchors in table cells are real anchors


def test_labels_show_only_what_sets_runs_apart(study):
    labels = {run.name: run.label for run in find_runs(study)}
    assert labels["runs/ram-sparse-translated60-seed1"] == "ram (reward=sparse)"
    assert labels["runs/resnet-translated60-seed0"] == "resnet"
    assert labels["runs/convnet-mnist-seed0"] == "convnet"


def test_seeds_trained_with_and_without_the_compiled_step_share_a_label(tmp_path):
    for seed in (0, 1):
        folder = write_run(tmp_path, f"fc-seed{seed}", model="fc", data="mnist", seed=seed, error=2.0)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["train"]["compile"] = seed == 1
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert {run.label for run in find_runs(tmp_path)} == {"fc"}


def test_report_cli_and_its_errors(tmp_path, capsys):
    root = tmp_path / "small"
    write_run(root, "convnet-mnist-seed0", model="convnet", data="mnist", seed=0, error=3.0)
    assert main(["report", str(root)]) == 0
    assert capsys.readouterr().out.split() == [str(root / "report.md"), str(root / "report.html")]
    report = (root / "report.md").read_text()
    assert table_row(report, "`convnet`")[1] == "3.00"
    assert "No `cost.json` in this folder" in report
    assert "No run has a `robustness.json`" in report
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "no run directories" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
