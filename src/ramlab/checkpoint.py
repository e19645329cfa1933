"""Checkpoints: self-describing dicts (config, weights, optimiser, position, RNG), written
atomically and loaded with `weights_only=True` (no pickled code is ever executed)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from ramlab.errors import RamlabError
from ramlab.files import atomic_write, sync_folder

FORMAT = 2  # 2: the RAM's glimpse network and core keep W_hg/W_hl and W_g/W_h as separate layers


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    buffer = io.BytesIO()  # serialise first: a failing disk then raises a plain OSError
    torch.save({"format": FORMAT, **state}, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def recovery_advice(path: Path) -> str:
    """What recovers a run whose checkpoint `path` is damaged, by the checkpoint's role."""
    if path.name == "last.pt":
        finished = path.with_name("result.json")
        aside = (
            f" and move {finished} aside (a finished run's resume needs last.pt)" if finished.exists() else ""
        )
        return (
            f"the run cannot continue from it. Delete {path}{aside}, and rerun the run's exact "
            "command with --resume: the run starts again from epoch 0"
        )
    if path.name == "best.next.pt":
        return (
            f"it holds the best weights staged before best.pt takes them: delete {path} and resume. "
            "best.pt keeps the best epoch before it, though last.pt may name the lost one as its best "
            "(result.json's best epoch and validation error would then not be best.pt's)"
        )
    if path.name == "best.pt":
        return (
            "the best weights it held are lost. Train the run again into a new --out with the "
            "command in its result.json or config.yaml (the same seed gives the same weights on "
            f"CPU); the final epoch's weights are in {path.with_name('last.pt')}, if it is intact"
        )
    return "restore it from a copy, or train again"


# A new best.pt is staged, then last.pt (which records the best epoch) is written, then the
# staged file becomes best.pt: a run killed between the two writes never leaves a best.pt from
# an epoch its last.pt does not know (a resumed GPU run, not bit-exact, would not redo it).
BEST, STAGED_BEST = "best.pt", "best.next.pt"


def stage_best(out: Path, state: dict[str, Any]) -> None:
    """Write the weights of a new best epoch beside best.pt; `commit_best` makes them best.pt."""
    save_checkpoint(out / STAGED_BEST, state)


def commit_best(out: Path) -> None:
    """Make the staged weights best.pt (call once last.pt records their epoch as the best)."""
    (out / STAGED_BEST).replace(out / BEST)
    sync_folder(out)


def settle_best(out: Path, best_epoch: int | None) -> None:
    """On starting a run in `out`: finish or drop what a killed run staged. `best_epoch` is the
    best epoch last.pt records (None for a fresh start)."""
    staged = out / STAGED_BEST
    if not staged.exists():
        return
    if best_epoch is not None and load_checkpoint(staged)["epoch"] == best_epoch:
        commit_best(out)  # last.pt was written: the staged epoch is the best
    else:
        staged.unlink()  # its epoch was lost with the run; the resume trains it again


TEXT_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".txt", ".md")
"""A run's other files, which no checkpoint is: named as such rather than as damage."""


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RamlabError(f"{path}: no checkpoint there")
    if path.suffix.lower() in TEXT_SUFFIXES:  # e.g. a run's config.yaml given for its weights
        raise RamlabError(
            f"{path}: not a checkpoint but a {path.suffix} file; a run's weights are its best.pt (or last.pt)"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickle of code: a damaged file
            raise RamlabError(
                f"{path}: cannot read the checkpoint (damaged); {recovery_advice(path)}"
            ) from None
        raise RamlabError(
            f"{path}: not a ramlab checkpoint: it holds Python objects, which a ramlab checkpoint never "
            "does, and ramlab does not load such files (loading them can run arbitrary code)"
        ) from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise RamlabError(
            f"{path}: cannot read the checkpoint (damaged: {type(exc).__name__}: {str(exc)[:120]}); "
            f"{recovery_advice(path)}"
        ) from None
    if not isinstance(state, dict) or "format" not in state:
        raise RamlabError(f"{path}: not a ramlab checkpoint")
    if state["format"] != FORMAT:
        raise RamlabError(
            f"{path}: checkpoint format {state['format']}, this ramlab reads format {FORMAT} "
            "(the model's layers changed). Fix: retrain the run, or evaluate it with the ramlab "
            "version that wrote it"
        )
    return state


def init_weights(model: torch.nn.Module, source: str | Path) -> Path:
    """Loads the model weights of checkpoint `source` (a .pt file, or a run directory: its
    best.pt) into `model`; every parameter must match by name and shape. Returns the file."""
    path = Path(source)
    if path.is_dir():
        path = path / "best.pt"
    load_weights(model, load_checkpoint(path), path)
    return path


def load_weights(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    """Loads checkpoint `state` (read from `path`) into `model`, or a RamlabError naming what
    does not fit (a config.yaml edited by hand, a checkpoint of another run) and the model
    the checkpoint was, instead of torch's size-mismatch traceback."""
    own = model.state_dict()
    theirs = state["model"]
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    reshaped = sorted(k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape)
    if missing or unexpected or reshaped:
        problems = [
            f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped))
            if keys
        ]
        saved = state.get("config", {})
        raise RamlabError(
            f"{path}: its weights do not fit this model ({'; '.join(problems)}). It was a "
            f"{saved.get('model', '?')} with {saved.get('model_config', {})}; give the same model "
            "settings (sizes, core, glimpses, scales) as that run"
        )
    model.load_state_dict(theirs)
