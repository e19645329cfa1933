"""metrics.jsonl: one JSON object per line, keys namespaced (`train/loss`, `val/error`, ...)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ramlab.errors import RamlabError
from ramlab.files import atomic_write, os_error_message


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 2)() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends lines; on resume, drops lines past the checkpoint's step (they will be redone)."""

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = _lines_up_to(self.path, resume_step)
            text = "".join(json.dumps(line) + "\n" for line in kept)
            atomic_write(self.path, lambda f: f.write(text), mode="w")  # a crash keeps the old log
        self._file = self.path.open("a")
        self._failed = False  # a write or sync failed: what close cannot write is known lost

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk: one message, as a checkpoint's write gives
            self._failed = True
            raise RamlabError(os_error_message(exc, self.path)) from None

    def sync(self) -> None:
        """Onto the disk (fsync), as last.pt is: a crash never leaves the checkpoint ahead of
        the log, whose lines up to it a resume would not redo."""
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            self._failed = True
            raise RamlabError(os_error_message(exc, self.path)) from None

    def close(self) -> None:
        """Close the file; after a failed write (a full disk) the buffer's lines cannot be
        written either, and the error already raised says so: closing does not raise again
        (it would replace that message with a bare OSError and skip the run's other cleanup)."""
        try:
            self._file.close()
        except OSError:
            if not self._failed:
                raise


def _lines_up_to(path: Path, step: int) -> list[dict[str, Any]]:
    """The log's records up to `step`, for a resume (rewriting the log without a damaged line
    would drop the curve after it)."""
    records = _parsed(
        path.read_bytes().splitlines(),
        path,
        valid=lambda r: isinstance(r, dict) and _is_step(r.get("step", 0)),
        fix="fix: delete that line (the others are kept) and resume again",
    )
    return [record for record in records if record.get("step", 0) <= step]


def _is_step(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The log's records (a curve silently ending at a damaged line would read as a run
    that stopped)."""
    return _parsed(Path(path).read_text().splitlines(), path, fix="delete it to read the rest")


def _parsed(
    lines: list, path: str | Path, *, fix: str, valid: Callable[[Any], bool] = lambda r: True
) -> list:
    """A log's lines (text or bytes) as records. The last, cut by a crash, is dropped; a
    damaged line before it is an error naming the file and the line, and `fix`."""
    lines = [line for line in lines if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = _DAMAGED
        if record is _DAMAGED or not valid(record):
            if number < len(lines):
                raise RamlabError(f"{path}: line {number} is not a metrics record ({line[:40]!r}); {fix}")
            break  # a line cut by a crash ends the log
        records.append(record)
    return records


_DAMAGED = object()


NO_TENSORBOARD = "--tensorboard needs the tensorboard package: pip install 'ramlab[tensorboard]'"


def check_tensorboard() -> None:
    """A RamlabError now, where the tensorboard package is missing: before a run builds its
    scenes or a study lists jobs that would each fail on it."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise RamlabError(NO_TENSORBOARD)


def open_tensorboard(out: str | Path, *, resume_step: int | None = None):
    """A TensorBoard writer logging to OUT/tensorboard (needs the tensorboard package). On a
    resume from step `resume_step`, the events logged after it (by the run that stopped) are
    purged, as the metrics log's lines are; on a fresh start in a folder that already holds
    events (a run begun again there, its last.pt gone), all of them."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RamlabError(NO_TENSORBOARD) from None
    folder = Path(out) / "tensorboard"
    if resume_step is not None:
        purge = resume_step + 1
    else:
        purge = 0 if folder.is_dir() and any(folder.iterdir()) else None
    return SummaryWriter(str(folder), purge_step=purge)


def write_tensorboard(board, record: dict[str, Any], step: int) -> None:
    """The record's scalars (namespaced keys) to `board`; nothing when board is None."""
    if board is None:
        return
    for key, value in record.items():
        if "/" in key and not isinstance(value, list):
            board.add_scalar(key, float(value), step)


def validation_record(result: Any, pos: Any, *, lr: float, starved: list[str]) -> dict[str, Any]:
    """metrics.jsonl's line for an epoch's validation `result` (an `Evaluation`) at the run's
    position `pos`: errors, loss, the rate the epoch's last step took, the rollouts and training
    time so far, where the glimpses landed (a RAM), and the parts no gradient reached."""
    record = {
        "step": pos.global_step,
        "epoch": pos.epoch,
        "val/error": result.error,
        "val/loss": result.loss,
        "val/per_step_error": result.per_step_error,
        "train/lr": lr,
        "train/rollouts": pos.rollouts_seen,
        "perf/train_seconds": pos.train_seconds,
    }
    if result.in_box is not None:
        record["val/in_box"] = sum(result.in_box) / len(result.in_box)
        record["val/in_box_per_step"] = result.in_box
        record["val/glimpse_distance"] = result.glimpse_distance
    if starved:
        record["warning/no_gradient"] = starved
    return record
