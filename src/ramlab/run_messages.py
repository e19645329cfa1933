"""What a stopped training run says: the exact command that carries it on, and what is kept."""

from __future__ import annotations

from pathlib import Path


def non_finite_message(
    what: str,
    at: str,
    out: Path,
    resume_command: str,
    lr: float,
    *,
    lr_floor: float = 0.0,
    grad_clip: float = 0.0,
) -> str:
    """`what` happened ("the loss became nan") `at` ("at epoch 3, step 12 of 430"): what is
    kept, what to run. The lower rate advised is a tenth; a resume keeps the schedule's floor
    `lr_floor` (lr_min), so it goes no lower there (a fresh run lowers the floor with it). The
    gradient clip advised is 5, or a fifth of the run's own."""
    where = f"{what} {at}; stopped"
    last = out / "last.pt"
    clip = f"--grad-clip {grad_clip / 5:g}" if grad_clip > 0 else "--grad-clip 5"
    if not last.exists():
        floor = f" --lr-min {lr_floor / 10:g}" if lr_floor > lr / 10 else ""
        return (
            f"{where}. No checkpoint was written yet, so nothing is kept: rerun with a lower rate "
            f"(e.g. --lr {lr / 10:g}{floor}) or {clip}; the run in {out} starts again"
        )
    lower = max(lr / 10, lr_floor)
    if lower >= lr:  # already at the floor, which a resume keeps
        return f"{where}. The last good checkpoint, {last}, is kept: continue from it with {resume_command} {clip}"
    return (
        f"{where}. The last good checkpoint, {last}, is kept: continue from it with a lower "
        f"learning rate: {resume_command} --lr {lower:g} (or {clip})"
    )


def interrupted_message(epoch: int, out: Path, resume_command: str, *, validating: bool = False) -> str:
    """Ctrl-C during epoch `epoch` (0-based), or during its validation: what is kept and the
    command that resumes."""
    last = out / "last.pt"
    kept = f"the last checkpoint ({last}) is kept" if last.exists() else "no checkpoint was written yet"
    when = f"in epoch {epoch + 1}'s validation" if validating else f"at epoch {epoch + 1}"
    return f"interrupted {when}; {kept}. Resume with: {resume_command}"


NOTHING_TRAINED_BECAUSE = {
    "epochs": "every epoch is done; raise --epochs to train on",
    "early_stop": "it is still early-stopped; raise --early-stop, or give 0, to train on",
    "time_budget": "its time budget is spent; raise --time-budget to train on",
}


def nothing_trained_message(out: Path, reason: str | None) -> str:
    """A resume that trained nothing and kept the run's result.json as it was (config.yaml
    and history.jsonl hold what the resume changed)."""
    why = NOTHING_TRAINED_BECAUSE.get(reason or "", "nothing was left to train")
    return f"note: {out} trained nothing more ({why}); its result.json stands as it was"


def finish_interrupted_message(out: Path, resume_command: str) -> str:
    """Ctrl-C while the finished training's best.pt was tested (no result.json yet)."""
    return (
        f"interrupted while testing {out / 'best.pt'}; the training is finished and kept. "
        f"Test it with: {resume_command}"
    )


def stopped_message(signal: str, epoch: int, step: int, steps: int, out: Path, resume_command: str) -> str:
    """A signal honoured after step `step` (1-based; `steps` per epoch) of epoch `epoch`
    (0-based), with last.pt just written there."""
    at = f"after epoch {epoch}" if step == 0 else f"at epoch {epoch + 1}, step {step} of {steps}"
    return (
        f"stopped by {signal} {at}; its checkpoint ({out / 'last.pt'}) is kept. Resume with: {resume_command}"
    )
