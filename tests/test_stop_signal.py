"""SIGTERM and Ctrl-C stop a training run after the step in progress, with last.pt written at
that step; a second signal stops it at once; the resumed run ends as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from test_reliability import TINY_CLI
from test_trainer import ObjectiveHook, assert_same_weights, tiny_config, weights

from ramlab import trainer as trainer_module
from ramlab.checkpoint import load_checkpoint
from ramlab.cli import main
from ramlab.errors import Interrupted
from ramlab.metrics import read_metrics
from ramlab.stop_signal import StopSignal
from ramlab.trainer import Trainer


@pytest.fixture
def default_handlers():
    """Each test starts from Python's own handlers and leaves them as it found them."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_the_first_signal_raises_a_flag_the_second_stops_at_once(default_handlers) -> None:
    with StopSignal() as stop:
        assert stop.received is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the handler
        assert stop.received == signal.SIGTERM
        assert stop.exit_code == 143
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with StopSignal() as again:  # a new run starts without the old flag
        assert again.received is None
        os.kill(os.getpid(), signal.SIGINT)
        assert again.received == signal.SIGINT and again.exit_code == 130


def test_an_ignored_signal_stays_ignored(default_handlers) -> None:
    """A background job of a non-interactive shell ignores SIGINT: Ctrl-C is not for it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with StopSignal() as stop:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_outside_the_main_thread_nothing_is_installed(default_handlers) -> None:
    seen = {}

    def enter() -> None:
        with StopSignal() as stop:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["received"] = stop.received

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == {"handler": signal.SIG_DFL, "received": None}


def stopped_then_resumed(tmp_path, monkeypatch, *, at: int, signals: tuple[int, ...]):
    """A straight run in tmp_path/a; one in tmp_path/b that gets `signals` during step `at`.
    Returns (the Interrupted raised, the last.pt left by it)."""
    config = tiny_config()  # 3 steps per epoch, 2 epochs
    Trainer(config, tmp_path / "a").fit()
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=at, action="signal", signals=signals)
        with pytest.raises(KeyboardInterrupt) as info:
            Trainer(config, tmp_path / "b", command="ramlab train ram").fit()
    assert not (tmp_path / "b" / "result.json").exists()
    state = load_checkpoint(tmp_path / "b" / "last.pt") if (tmp_path / "b" / "last.pt").exists() else None
    return info.value, state


def assert_resumes_as_straight(config, tmp_path) -> None:
    result = Trainer(config, tmp_path / "b").fit(resume=True)
    assert_same_weights(weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt"))
    assert_same_weights(weights(tmp_path / "a" / "best.pt"), weights(tmp_path / "b" / "best.pt"))
    straight = json.loads((tmp_path / "a" / "result.json").read_text())
    for key in ("test_error", "val_error", "per_glimpse_test_error", "steps", "rollouts_seen", "best_epoch"):
        assert result[key] == straight[key], key


def test_sigterm_mid_epoch_keeps_that_step_and_resumes_exactly(
    fake_mnist, tmp_path, monkeypatch, default_handlers
) -> None:
    stopped, state = stopped_then_resumed(tmp_path, monkeypatch, at=2, signals=(signal.SIGTERM,))
    last = tmp_path / "b" / "last.pt"
    assert isinstance(stopped, Interrupted) and stopped.exit_code == 143
    assert str(stopped) == (
        f"stopped by SIGTERM at epoch 1, step 2 of 3; its checkpoint ({last}) is kept. "
        f"Resume with: ramlab train ram --out {tmp_path / 'b'} --resume"
    )
    # The step in progress finished and was saved: no epoch-end checkpoint existed yet.
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 2, 2)
    assert state["rollouts_seen"] == 16
    assert_resumes_as_straight(tiny_config(), tmp_path)


def test_a_signal_in_the_last_step_stops_after_the_validation(
    fake_mnist, tmp_path, monkeypatch, default_handlers
) -> None:
    stopped, state = stopped_then_resumed(tmp_path, monkeypatch, at=3, signals=(signal.SIGINT,))
    assert stopped.exit_code == 130
    assert str(stopped).startswith("stopped by SIGINT after epoch 1; its checkpoint")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 3)
    validations = [
        line["epoch"] for line in read_metrics(tmp_path / "b" / "metrics.jsonl") if "val/error" in line
    ]
    assert validations == [1]
    assert_resumes_as_straight(tiny_config(), tmp_path)


def test_a_second_signal_stops_at_once(fake_mnist, tmp_path, monkeypatch, default_handlers) -> None:
    stopped, state = stopped_then_resumed(
        tmp_path, monkeypatch, at=2, signals=(signal.SIGTERM, signal.SIGTERM)
    )
    assert str(stopped).startswith("interrupted at epoch 1; no checkpoint was written yet")
    assert state is None


def test_the_cli_says_where_it_stopped_and_exits_128_plus_the_signal(
    fake_mnist, tmp_path, monkeypatch, capsys, default_handlers
) -> None:
    out = tmp_path / "run"
    ObjectiveHook(monkeypatch, at=2, action="signal", signals=(signal.SIGTERM,))
    assert main(["train", "ram", *TINY_CLI, "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert f"stopped by SIGTERM at epoch 1, step 2 of 3; its checkpoint ({out / 'last.pt'}) is kept" in err
    assert err.rstrip().endswith("--resume")
    assert load_checkpoint(out / "last.pt")["global_step"] == 2


@pytest.mark.parametrize(
    ("call", "says", "kept_epoch"),
    [
        (2, "interrupted in epoch 2's validation; the last checkpoint ({last}) is kept", 1),
        (3, "interrupted while testing {best}; the training is finished and kept", 2),  # the final test
    ],
)
def test_a_second_signal_in_an_evaluation_names_it_and_exits_with_its_signal(
    fake_mnist, tmp_path, monkeypatch, default_handlers, call, says, kept_epoch
) -> None:
    config = tiny_config()  # 3 steps per epoch, 2 epochs: validations are calls 1 and 2
    Trainer(config, tmp_path / "a").fit()
    real, calls = trainer_module.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "evaluate", evaluate)
        with pytest.raises(KeyboardInterrupt) as info:
            Trainer(config, tmp_path / "b", command="ramlab train ram").fit()
    stopped, out = info.value, tmp_path / "b"
    assert isinstance(stopped, Interrupted) and stopped.exit_code == 143  # 128 + SIGTERM, not 130
    assert str(stopped).startswith(says.format(last=out / "last.pt", best=out / "best.pt"))
    assert load_checkpoint(out / "last.pt")["epoch"] == kept_epoch
    assert_resumes_as_straight(config, tmp_path)


def test_a_resumed_epoch_keeps_the_gradient_norms_its_first_steps_logged(
    fake_mnist, tmp_path, monkeypatch, default_handlers
) -> None:
    # A part that gets a gradient only at the run's first step: epoch 1 is not starved, epoch
    # 2 is. Stopped after step 2 and resumed, epoch 1 still counts step 1's norm.
    def norms_then_none() -> object:
        calls = []

        def grad_norms(model) -> dict[str, float]:
            calls.append(1)
            return {"grad/x": 1.0 if len(calls) == 1 else 0.0}

        return grad_norms

    def warnings(run: str) -> list:
        lines = read_metrics(tmp_path / run / "metrics.jsonl")
        return [line.get("warning/no_gradient") for line in lines if "val/error" in line]

    config = tiny_config()  # 3 steps per epoch, 2 epochs, a line every step
    monkeypatch.setattr(trainer_module, "grad_norms", norms_then_none())
    Trainer(config, tmp_path / "a").fit()
    assert warnings("a") == [None, ["x"]]
    monkeypatch.setattr(trainer_module, "grad_norms", norms_then_none())
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=2, action="signal", signals=(signal.SIGTERM,))
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, tmp_path / "b", command="ramlab train ram").fit()
    Trainer(config, tmp_path / "b").fit(resume=True)
    assert warnings("b") == [None, ["x"]]
