"""A run directory before training: its config saved, or checked against on a resume (the
changes a resume may make recorded in history.jsonl), the checkpoint to resume from, and a
finished run's result set aside when it trains on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ramlab.checkpoint import load_checkpoint
from ramlab.config import load_yaml, save_yaml
from ramlab.errors import RamlabError
from ramlab.runconfig import RunConfig, resume_changes


def prepare_run_dir(out: Path, config: RunConfig, command: str, *, resume: bool) -> dict[str, Any] | None:
    """Returns the checkpoint to resume from, or None for a fresh run."""
    saved = out / "config.yaml"
    last = out / "last.pt"
    if resume and (out / "result.json").exists() and not last.exists():
        raise RamlabError(f"{out}: the run has finished (result.json) and has no last.pt")
    if saved.exists():
        if resume:
            try:
                changed = resume_changes(RunConfig.from_dict(load_yaml(saved), where=str(saved)), config)
            except RamlabError as exc:
                raise RamlabError(f"{out}: {exc}") from None
            if changed:  # the new budget is the run's config from now on; history says when
                save_yaml(saved, config.to_dict())
                with (out / "history.jsonl").open("a") as history:
                    history.write(json.dumps({"command": command, "changed": changed}) + "\n")
            return load_checkpoint(last) if last.exists() else None
        if last.exists() or (out / "result.json").exists():
            raise RamlabError(
                f"{out} already holds a run; pass --resume to continue it, or choose another --out"
            )
    save_yaml(saved, config.to_dict())
    return None


def set_aside_result(out: Path) -> None:
    """Before a finished run trains on (a resume with a larger budget): its result.json
    would no longer describe best.pt once an epoch beats it, so it becomes
    result.previous.json, and the run reads as unfinished until its new end."""
    finished = out / "result.json"
    if finished.exists():
        finished.replace(out / "result.previous.json")
