"""Checkpoints: self-describing dicts (config, weights, optimiser, position, RNG), written
atomically and loaded with `weights_only=True` (no pickled code is ever executed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ramlab.errors import RamlabError
from ramlab.files import atomic_write

FORMAT = 2  # 2: the RAM's glimpse network and core keep W_hg/W_hl and W_g/W_h as separate layers


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    state = {"format": FORMAT, **state}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RamlabError(f"{path}: no checkpoint there")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise RamlabError(
            f"{path}: cannot read the checkpoint ({type(exc).__name__}: {str(exc)[:200]}); "
            "it is damaged or not a ramlab checkpoint. Fix: delete it and rerun (training resumes "
            "from the other checkpoint, or starts again)"
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
    state = load_checkpoint(path)
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
    return path
