"""The command line refuses what would lose files or quietly mean something else: a --json
that would overwrite a run's own files, and empty paths (found by an audit of bad input)."""

from __future__ import annotations

import json

import pytest
from test_cli_train import TINY

from ramlab.cli import main


@pytest.fixture
def run(fake_mnist, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "ram", "--data", "translated60", *TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["result.json", "config.yaml"])
def test_eval_json_never_overwrites_a_runs_own_files(run, capsys, name):
    before = (run / name).read_bytes()
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "--threads", "1", "--json", str(run / name)]) == 2
    assert "that file holds something other than an evaluation" in capsys.readouterr().err
    assert (run / name).read_bytes() == before
    # its own earlier output it may replace
    again = run.parent / "eval.json"
    for _ in range(2):
        assert main(["eval", str(run), "--device", "cpu", "--threads", "1", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["run"] == str(run)


def test_cost_json_never_overwrites_another_file(run, capsys):
    before = (run / "result.json").read_bytes()
    argv = ["cost", "--models", "fc", "--sizes", "28", "--repeats", "1", "--batch", "2", "--device", "cpu"]
    assert main([*argv, "--json", str(run / "result.json")]) == 2
    assert "that file holds something other than a cost table" in capsys.readouterr().err
    assert (run / "result.json").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["train", "ram", "--config", ""], "--config"),
        (["train", "ram", "--init-from", ""], "--init-from"),
        (["train", "ram", "--out", " "], "--out"),
        (["eval", "", "--json", "x.json"], "RUN_DIR"),
        (["eval", "somewhere", "--json", ""], "--json"),
        (["report", ""], "DIR"),
        (["cost", "--config", ""], "--config"),
    ],
)
def test_an_empty_path_is_refused(argv, name, capsys):
    # "" from an unset shell variable meant "not given" or the current folder.
    assert main(argv) == 2
    assert f"ramlab: error: {name} is empty: give a file or folder" in capsys.readouterr().err
