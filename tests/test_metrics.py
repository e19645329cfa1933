"""metrics.jsonl's lines, built by hand-checkable pure functions."""

from __future__ import annotations

import json
import re

import pytest

from ramlab.errors import RamlabError
from ramlab.evaluate import Evaluation
from ramlab.metrics import MetricsLog, read_metrics, validation_record
from ramlab.position import Position


def test_a_validation_line_by_hand() -> None:
    pos = Position(epoch=3, global_step=120, rollouts_seen=3840, train_seconds=12.5)
    ram = Evaluation(
        error=2.0,
        per_step_error=[50.0, 10.0, 2.0],
        loss=0.1,
        count=50,
        protocol="policy mean, one rollout",
        in_box=[20.0, 60.0, 100.0],
        glimpse_distance=4.0,
    )
    assert validation_record(ram, pos, lr=1e-3, starved=["core"]) == {
        "step": 120,
        "epoch": 3,
        "val/error": 2.0,
        "val/loss": 0.1,
        "val/per_step_error": [50.0, 10.0, 2.0],
        "train/lr": 1e-3,
        "train/rollouts": 3840,
        "perf/train_seconds": 12.5,
        "val/in_box": 60.0,  # the mean over glimpses
        "val/in_box_per_step": [20.0, 60.0, 100.0],
        "val/glimpse_distance": 4.0,
        "warning/no_gradient": ["core"],
    }
    cnn = Evaluation(error=1.0, per_step_error=[1.0], loss=0.2, count=50, protocol="one forward pass")
    line = validation_record(cnn, pos, lr=1e-3, starved=[])
    assert "val/in_box" not in line and "warning/no_gradient" not in line and line["val/error"] == 1.0


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"[1, 2]", b'{"step": "x"}', b'{"step": 3, "val/'])
def test_a_resume_keeps_the_log_to_its_step_and_never_drops_lines_past_a_damaged_one(tmp_path, bad):
    path = tmp_path / "metrics.jsonl"
    lines = [b'{"step": 1, "train/loss": 2.0}', b'{"step": 2}', b'{"step": 9}']
    # Damaged before the last line: rewriting the log without it would lose the curve after it.
    path.write_bytes(b"\n".join([lines[0], bad, lines[1]]) + b"\n")
    before = path.read_bytes()
    with pytest.raises(
        RamlabError, match=rf"^{re.escape(str(path))}: line 2 is not a metrics record .*delete that line"
    ):
        MetricsLog(path, resume_step=5)
    assert path.read_bytes() == before
    # As the last line it was cut by a crash: dropped, with the lines past the checkpoint's step.
    path.write_bytes(b"\n".join([*lines, bad]) + b"\n")
    MetricsLog(path, resume_step=5).close()
    assert read_metrics(path) == [{"step": 1, "train/loss": 2.0}, {"step": 2}]


def test_a_full_disk_under_the_log_is_one_clear_message(tmp_path, monkeypatch):
    import errno
    import os

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"step": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RamlabError, match=r"metrics\.jsonl: No space left on device; the disk is full"):
        log.sync()  # an OSError's traceback before
    log.close()


def test_closing_after_a_full_disk_keeps_the_first_message(tmp_path):
    # The failed write's bytes stay buffered: close() flushed them again and raised a bare
    # OSError that replaced the message naming the file, and skipped the run's other cleanup.
    import errno
    import os

    class FullDisk:
        closed = False

        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            self.closed = True
            self.flush()

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log._file.close()
    log._file = FullDisk()
    with pytest.raises(RamlabError, match=r"metrics\.jsonl: No space left on device"):
        log.write({"step": 1})
    log.close()  # the loss is already told: no second error
    # A close that fails first is not hidden: nothing said the lines were lost.
    other = MetricsLog(tmp_path / "other.jsonl")
    other._file.close()
    other._file = FullDisk()
    with pytest.raises(OSError):
        other.close()


def test_reading_a_log_drops_a_cut_last_line_and_refuses_a_damaged_one_before_it(tmp_path):
    # A damaged line mid-log silently ended the curve there: compare_curves read a run that
    # went on to epoch 7 as one that stopped at 3.
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"step": s, "epoch": s, "val/error": 1.0}) for s in (1, 2, 3)]
    path.write_text("\n".join([*good, '{"step": 4, "ep']) + "\n")
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]  # cut by a crash: dropped
    path.write_text("\n".join([good[0], '{"step": 2, "ep', *good[2:]]) + "\n")
    with pytest.raises(RamlabError, match=r"metrics\.jsonl: line 2 is not a metrics record"):
        read_metrics(path)


def test_a_committed_curve_finds_the_config_its_result_holds(tmp_path):
    from ramlab.progress import RunFiles

    curve = tmp_path / "t60-m2-es80-val.jsonl"  # as results/recipes/tuning/ keeps some runs
    curve.write_text(json.dumps({"step": 1, "epoch": 1, "val/error": 1.0}) + "\n")
    (tmp_path / "t60-m2-es80-result.json").write_text(json.dumps({"config": {"data": "translated60"}}))
    assert RunFiles.find(curve).config == tmp_path / "t60-m2-es80-result.json"
    (tmp_path / "t60-m2-es80-config.yaml").write_text("data: translated60\n")
    assert RunFiles.find(curve).config == tmp_path / "t60-m2-es80-config.yaml"  # the config first
