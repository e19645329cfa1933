"""cost.json read back for the study runner and the report: both layouts, and a message
that names the file when it is damaged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ramlab.cost_rows import read_cost_rows
from ramlab.errors import RamlabError

ROW = {"model": "ram", "size": 28, "flops": 10}


def test_rows_in_either_layout_and_none_when_absent(tmp_path):
    path = tmp_path / "cost.json"
    assert read_cost_rows(path) == []
    path.write_text(json.dumps({"rows": [ROW]}))
    assert read_cost_rows(path) == [ROW]
    path.write_text(json.dumps([ROW]))
    assert read_cost_rows(str(path)) == [ROW]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"rows": ["\xff"]}', "not valid JSON"),  # not UTF-8
        (json.dumps({"rows": [{"model": "ram"}]}).encode(), "not a cost table"),
        (b'"rows"', "not a cost table"),
    ],
)
def test_a_damaged_cost_json_is_named(tmp_path, content, message):
    path = tmp_path / "cost.json"
    path.write_bytes(content)
    with pytest.raises(RamlabError, match=rf"cost.json: {message}.*delete it to measure again"):
        read_cost_rows(path)


def test_the_report_reads_cost_rows_without_importing_the_study_runner():
    # ramlab.study imports ramlab.report: the other way round would be a cycle.
    code = "import sys, ramlab.report; print('ramlab.study' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_the_study_runner_still_offers_it():
    from ramlab import study

    assert study.read_cost_rows is read_cost_rows
