"""A damaged run never stops the report: a run whose files cannot be read, lack a field the
report needs or hold NaN is left out (or, for eval.json and robustness.json, that file alone),
listed with the reason, and warned about on stderr."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_report import table_row, write_run

from ramlab.cli import main
from ramlab.report import Skipped, read_runs

DAMAGED = "runs/fc-mnist-seed0"


def result_with(**changes) -> str:
    return json.dumps({"test_error": 2.0, "epochs": 2, "train_seconds": 9.0, **changes})


# (file, its damaged bytes, the reason the report gives)
CASES = {
    "missing test_error": ("result.json", json.dumps({"epochs": 2}), "result.json: no test_error"),
    # a run trained with --test false: not damaged, untested (its message says how to test it)
    "null test_error": (
        "result.json",
        result_with(test_error=None),
        "result.json: finished without a test (--test false)",
    ),
    "NaN test_error": (
        "result.json",
        result_with(test_error=float("nan")),
        "result.json: test_error is NaN, not a finite number",
    ),
    "text test_error": (
        "result.json",
        result_with(test_error="2.0"),
        'result.json: test_error is "2.0", not a finite number',
    ),
    "infinite train time": (
        "result.json",
        result_with(train_seconds=float("inf")),
        "result.json: train_seconds is Infinity, not a finite number",
    ),
    "non-UTF-8 bytes": (
        "result.json",
        b'{"test_error": 2.0, "command": "\xff"}',
        "result.json: not UTF-8 text (byte 0xff at offset 32)",
    ),
    "invalid JSON": (
        "result.json",
        "{not json",
        "result.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
    ),
    "not a mapping": ("result.json", "[2.0]", "result.json: the file is not a mapping"),
    "invalid YAML config": ("config.yaml", "model: [fc\n", "config.yaml: not valid YAML ("),
    "config without model": ("config.yaml", "data: mnist\n", "config.yaml: no model name"),
    "non-UTF-8 metrics": (
        "metrics.jsonl",
        b'{"step": 1}\n\xfe\n',
        "metrics.jsonl: not UTF-8 text (byte 0xfe",
    ),
    "NaN validation error": (
        "metrics.jsonl",
        '{"step": 1, "epoch": 1}\n{"step": 2, "epoch": 1, "val/error": NaN}\n',
        "metrics.jsonl: line 2: val/error is NaN, not a finite number",
    ),
    "metrics line not an object": ("metrics.jsonl", "[1, 2]\n", "metrics.jsonl: line 1 is not a mapping"),
    # a damaged line before the last (read_metrics' own error): skipped, not a crash of the report
    "metrics line damaged mid-log": (
        "metrics.jsonl",
        '{"step": 1}\n{"step": 2, "ep\n{"step": 3}\n',
        "metrics.jsonl: line 2 is not a metrics record",
    ),
    "NaN FLOPs": (
        "eval.json",
        json.dumps({"flops": float("nan")}),
        "eval.json: flops is NaN, not a finite positive number",
    ),
    "robustness errors short": (
        "robustness.json",
        json.dumps({"shifts": {"rotate": {"levels": [0.0, 30.0], "error": [2.0]}}}),
        "robustness.json: shift rotate: 1 errors for 2 levels",
    ),
    "negative test_error": (
        "result.json",
        result_with(test_error=-1),
        "result.json: test_error is -1, not a percentage in 0..100",
    ),
    "text test_count": (
        "result.json",
        result_with(test_count="10000"),
        'result.json: test_count is "10000", not a whole number of scenes >= 1',
    ),
    "null reward": (
        "config.yaml",
        "model: fc\ndata: mnist\nmodel_config: {reward: null}\n",
        "config.yaml: model_config.reward is null, not a reward's text",
    ),
    "null robustness rollouts": (
        "robustness.json",
        json.dumps({"rollouts": None, "shifts": {"rotate": {"levels": [0.0], "error": [2.0]}}}),
        "robustness.json: rollouts is null, not a whole number >= 1",
    ),
    "ragged glimpse lists": (
        "eval.json",
        json.dumps({"where": {"inside_bbox_percent": [1.0, 2.0], "distance_to_bbox_px": [3.0]}}),
        "eval.json: where: the two per-glimpse lists differ in length",
    ),
    "NaN robustness error": (
        "robustness.json",
        json.dumps({"shifts": {"rotate": {"levels": [0.0, 30.0], "error": [2.0, float("nan")]}}}),
        "robustness.json: shift rotate: error is [2.0, NaN], not a list of finite numbers",
    ),
    # Both crashed the whole report (the plot read trained[1]; sorted() compared "5" with 5).
    "robustness training range of one": (
        "robustness.json",
        json.dumps({"shifts": {"scale": {"levels": [1.0], "error": [2.0], "trained": [5]}}}),
        "robustness.json: shift scale: trained is [5], not null, a number or a range [low, high]",
    ),
    "text robustness count": (
        "robustness.json",
        json.dumps({"shifts": {"rotate": {"levels": [0.0], "error": [2.0], "count": "5"}}}),
        'robustness.json: shift rotate: count is "5", not a whole number >= 1',
    ),
}


def damage(root: Path, name: str, content: str | bytes) -> None:
    path = root / DAMAGED / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("case", CASES)
def test_a_run_with_a_damaged_file_is_skipped_with_its_reason(tmp_path, case):
    write_run(tmp_path, "convnet-mnist-seed0", model="convnet", data="mnist", seed=0, error=3.0)
    write_run(tmp_path, "fc-mnist-seed0", model="fc", data="mnist", seed=0, error=2.0)
    name, content, reason = CASES[case]
    damage(tmp_path, name, content)
    runs, skipped = read_runs(tmp_path)
    if name in ("eval.json", "robustness.json"):  # made after training: left out alone
        assert [run.name for run in runs] == ["runs/convnet-mnist-seed0", DAMAGED]
        kept = runs[1]
        assert kept.result["test_error"] == 2.0  # its test error still counts
        assert (kept.evaluation if name == "eval.json" else kept.robustness) is None
        assert len(skipped) == 1 and skipped[0].name == f"{DAMAGED}/{name}"
        assert "(the run's other files are read; delete it and run `ramlab study` again" in skipped[0].reason
    else:
        assert [run.name for run in runs] == ["runs/convnet-mnist-seed0"]
        assert len(skipped) == 1 and skipped[0].name == DAMAGED
    assert skipped[0].reason.startswith(reason)


def test_the_report_lists_what_it_skips_and_writes_the_rest(tmp_path, capsys):
    write_run(tmp_path, "convnet-mnist-seed0", model="convnet", data="mnist", seed=0, error=3.0)
    write_run(tmp_path, "fc-mnist-seed0", model="fc", data="mnist", seed=0, error=2.0)
    write_run(tmp_path, "fc-mnist-seed1", model="fc", data="mnist", seed=1, error=2.5)
    damage(tmp_path, "result.json", result_with(test_error=float("nan")))
    (tmp_path / "runs" / "fc-mnist-seed1" / "result.json").write_bytes(b"\xff\xfe")
    good = {"params": 10, "flops": 20, "latency_ms": 1.0, "throughput": 5.0, "peak_memory_mb": 0.5}
    rows = [{"model": "ram", "size": 28, **good}, {"model": "ram", "size": 60, **good, "latency_ms": None}]
    (tmp_path / "cost.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "jobs.jsonl").write_text('{"kind": "cost", "command": "ramlab study x"}\n{"kind": "co\n')

    assert main(["report", str(tmp_path)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        f"warning: report skips {DAMAGED}: result.json: test_error is NaN, not a finite number",
        "warning: report skips runs/fc-mnist-seed1: result.json: not UTF-8 text (byte 0xff at offset 0)",
        "warning: report skips cost.json, ram at 60 px: no latency_ms",
        "warning: report skips jobs.jsonl: line 2: not valid JSON (Unterminated string starting at)",
    ]
    report = (tmp_path / "report.md").read_text()
    assert "**Skipped runs and files**" in report
    assert table_row(report, f"`{DAMAGED}`")[1] == "result.json: test_error is NaN, not a finite number"
    assert table_row(report, "`cost.json, ram at 60 px`")[1] == "no latency_ms"
    assert table_row(report, "`convnet`")[1] == "3.00"  # the rest of the report is there
    assert "`fc`" not in report
    cost = report[report.index("## Compute cost") :]
    assert table_row(cost, "`ram`")[1] == "28" and "| `ram` | 60 |" not in cost
    assert "Source: `cost.json`." in cost  # jobs.jsonl could not say who measured it
    assert "Skipped runs and files" in (tmp_path / "report.html").read_text()


def test_a_folder_of_damaged_runs_still_gets_a_report_that_lists_them(tmp_path, capsys):
    write_run(tmp_path, "fc-mnist-seed0", model="fc", data="mnist", seed=0, error=2.0)
    damage(tmp_path, "result.json", "{not json")
    (tmp_path / "cost.json").write_text("{not json either")
    assert main(["report", str(tmp_path)]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 2
    report = (tmp_path / "report.md").read_text()
    assert table_row(report, f"`{DAMAGED}`")[1].startswith("result.json: not valid JSON (")
    assert table_row(report, "`cost.json`")[1].startswith("not valid JSON (")
    assert "`cost.json` holds no usable measurement" in report
    assert "0 finished run(s) on no dataset" in report


def test_skipped_is_exported_with_the_readers():
    import ramlab.report
    import ramlab.report.runs

    assert {"Skipped", "read_runs"} <= set(ramlab.report.__all__)
    assert Skipped is ramlab.report.runs.Skipped  # what read_runs returns, not a copy of it


def test_a_copy_of_a_run_counts_once_and_is_listed_as_left_out(tmp_path, capsys):
    write_run(tmp_path, "fc-mnist-seed0", model="fc", data="mnist", seed=0, error=2.0)
    write_run(tmp_path, "fc-mnist-seed1", model="fc", data="mnist", seed=1, error=3.0)
    shutil.copytree(tmp_path / "runs" / "fc-mnist-seed0", tmp_path / "runs" / "later" / "fc-mnist-seed0")
    write_run(tmp_path, "fc-mnist-seed0-unfinished", model="fc", data="mnist", seed=0, error=None)
    runs, skipped = read_runs(tmp_path)
    assert [r.name for r in runs] == [
        "runs/fc-mnist-seed0",
        "runs/fc-mnist-seed0-unfinished",
        "runs/fc-mnist-seed1",
    ]
    assert skipped == [
        Skipped(
            "runs/later/fc-mnist-seed0",
            "the same experiment and seed as runs/fc-mnist-seed0 (one seed counts once; delete or move "
            "the copy, or give the rerun another seed)",
        )
    ]
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert table_row(report, "`fc`")[1].startswith("2.50")  # two seeds (2.33 with the copy)
    assert table_row(report, "`runs/later/fc-mnist-seed0`")[1].startswith("the same experiment and seed")


def test_cost_rows_of_the_wrong_shape_are_skipped_not_a_crash(tmp_path, capsys):
    # A size written as text sorted against numbers (TypeError), a list of FLOPs by part
    # (AttributeError) and a list as a model's name (unhashable) stopped the whole report.
    write_run(tmp_path, "convnet-mnist-seed0", model="convnet", data="mnist", seed=0, error=3.0)
    good = {"params": 10, "flops": 20, "latency_ms": 1.0, "throughput": 5.0, "peak_memory_mb": 0.5}
    rows = [
        {"model": "ram", "size": 28, **good, "flops_breakdown": {"core": 20}},
        {"model": "ram", "size": "60", **good},
        {"model": "resnet", "size": 28, **good, "flops_breakdown": [1, 2]},
        {"model": ["ram"], "size": 100, **good},
    ]
    (tmp_path / "cost.json").write_text(json.dumps({"rows": rows}))
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        'warning: report skips cost.json, ram at 60 px: size is "60", not an image side in pixels',
        "warning: report skips cost.json, resnet at 28 px: flops_breakdown is [1, 2], not FLOPs by part",
        """warning: report skips cost.json, ['ram'] at 100 px: model is ["ram"], not a model's name""",
    ]
    cost = (tmp_path / "report.md").read_text()
    cost = cost[cost.index("## Compute cost") :]
    assert table_row(cost, "`ram`")[1] == "28"
