"""benchmarks/scale_placement_ab.py end to end on a tiny trained run: the two placements of a
resized digit (robustness.json formats 6 and 7) on the same digits."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from ramlab.cli import main
from ramlab.errors import RamlabError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_placement_ab.py"


def test_the_two_placements_agree_at_scale_1_and_only_format_6_moves_a_smaller_digit_far(
    fake_mnist, tmp_path, monkeypatch, capsys
):
    tiny = ["--data", "translated60", "--epochs", "1", "--batch-size", "4", "--train-limit", "8",
            "--glimpses", "2", "--glimpse-size", "8", "--scales", "2", "--glimpse-hidden", "8",
            "--location-hidden", "4", "--hidden", "12", "--device", "cpu", "--threads", "1",
            "--progress", "false", "--test", "false"]  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "ram", *tiny, "--out", str(run)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(
        sys, "argv", ["scale_placement_ab.py", str(run), "--levels", "0.5", "1", "--threads", "1"]
    )
    runpy.run_path(str(SCRIPT), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "scale_placement_ab.py" in lines[0]
    assert lines[1].endswith("(ram on translated60), val error % at each scale level")
    rows = {float(line.split()[0]): line.replace(",", " ").split()[1:] for line in lines[3:]}
    e6, e7, moved6, moved7 = map(float, rows[1.0])
    assert e6 == e7 and moved6 == moved7 == 0.0  # the dataset's own scenes, both ways
    e6, e7, moved6, moved7 = map(float, rows[0.5])
    # A 14 px digit: format 6 placed it anywhere in a window 14 px wider; format 7 on its
    # centre (its ink box, scaled about that centre, moves a pixel or so).
    assert moved7 < 1.5 < moved6
    # The test split stays unread for a model that is not final.
    monkeypatch.setattr(sys, "argv", ["scale_placement_ab.py", str(run), "--split", "test"])
    with pytest.raises(RamlabError, match="its test split stays unread"):
        runpy.run_path(str(SCRIPT), run_name="__main__")
