"""TensorBoard logging: a resume purges the events after its checkpoint, and every event
logged before a checkpoint is on the disk when it is written."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from test_trainer import tiny_config

from ramlab import trainer as trainer_module
from ramlab.metrics import open_tensorboard
from ramlab.trainer import Trainer


def test_a_resumed_run_purges_the_tensorboard_events_after_its_checkpoint(tmp_path, monkeypatch) -> None:
    purges = []
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = lambda logdir, purge_step=None: purges.append(purge_step)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    open_tensorboard(tmp_path)
    open_tensorboard(tmp_path, resume_step=6)  # last.pt at step 6: step 7's events go
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1").write_bytes(b"")
    open_tensorboard(tmp_path)  # begun again over an earlier attempt's events: all of them go
    assert purges == [None, 7, 0]


def test_tensorboard_events_reach_the_disk_before_each_checkpoint(fake_mnist, tmp_path, monkeypatch) -> None:
    # SummaryWriter buffers up to 2 minutes of events; a resume purges only those after
    # last.pt's step, so events at or before it lost with a killed process never came back.
    events: list[str] = []

    class Writer:
        def __init__(self, logdir, purge_step=None):
            pass

        def add_scalar(self, key, value, step):
            events.append(f"scalar {step}")

        def flush(self):
            events.append("flush")

        def close(self):
            events.append("close")

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    real = trainer_module.save_checkpoint
    monkeypatch.setattr(
        trainer_module,
        "save_checkpoint",
        lambda path, state: events.append(f"save {Path(path).name}") or real(path, state),
    )
    Trainer(tiny_config(epochs=2, tensorboard=True), tmp_path / "run").fit()
    saves = [i for i, e in enumerate(events) if e == "save last.pt"]
    assert len(saves) == 2  # one an epoch
    for i in saves:
        written = [e for e in events[:i] if e.startswith("scalar") or e == "flush"]
        assert written[-1] == "flush", events[:i]  # every event logged so far was flushed
