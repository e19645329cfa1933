"""A run directory before and after training: its config saved, or checked against on a
resume (the changes a resume may make recorded in history.jsonl), the checkpoint to resume
from, a finished run's result set aside when it trains on, and the result record at the end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from ramlab.checkpoint import load_checkpoint
from ramlab.config import load_yaml, save_yaml
from ramlab.errors import RamlabError
from ramlab.evaluate import Evaluation
from ramlab.position import Position
from ramlab.runconfig import RESUME_MAY_CHANGE, RunConfig, keep_unused, resume_changes


def refuse_study_folder(out: Path) -> None:
    """A run never goes into a study's own folder (before its lock is taken there)."""
    if (out / "study.yaml").is_file():
        raise RamlabError(
            f"{out} is a study's folder (its study.yaml; its runs live in {out / 'runs'}): give this run "
            "its own --out"
        )


def prepare_run_dir(
    out: Path,
    config: RunConfig,
    command: str,
    *,
    resume: bool,
    commit: str | None = None,
    device: str | None = None,
) -> tuple[dict[str, Any] | None, RunConfig]:
    """Returns the checkpoint to resume from (None for a fresh run) and the config to train
    with: `config`, but a resume keeps the run's own values of fields it never reads
    (`keep_unused`). A resume that changes the config, runs other code (`commit`) than wrote
    the checkpoint, or trains on another device (`device`: `auto` resolved elsewhere, which
    draws its samples from another generator) gets a line in history.jsonl: result.json
    names only the code and device that ended the run."""
    saved = out / "config.yaml"
    last = out / "last.pt"
    held = [name for name in ("last.pt", "best.pt", "result.json") if (out / name).exists()]
    if held and not saved.exists():  # the run's config.yaml lost: never train over its files
        if resume and last.exists():
            save_yaml(saved, load_checkpoint(last)["config"])  # as the run last trained
        else:
            how = (
                "pass --resume to continue it (last.pt holds its config)"
                if last.exists()
                else ("restore config.yaml from a copy (best.pt holds the run's config)")
            )
            raise RamlabError(
                f"{out} holds a run ({', '.join(held)}) but no config.yaml: {how}, or choose another --out"
            )
    if resume and (out / "result.json").exists() and not last.exists():
        if read_result(out / "result.json") is None:
            raise RamlabError(
                f"{out}: result.json is damaged and last.pt, which a resume rewrites it from, is "
                "gone: restore result.json from a copy, or move the folder aside and train anew"
            )
        raise RamlabError(
            f"{out}: the run has finished (result.json) and has no last.pt, so it cannot be resumed (its "
            "result stands, and `ramlab eval` reads its best.pt); to train it on or test a tuning run, "
            "restore last.pt from a copy, or move the folder aside and train anew"
        )
    if saved.exists():
        if resume and not last.exists() and not (out / "result.json").exists():
            # stopped before its first checkpoint (out of memory at the first step, Ctrl-C in
            # epoch 1): nothing trained to keep, so the resume starts it with its own config
            save_yaml(saved, config.to_dict())
            return None, config
        if resume:
            try:
                values = load_yaml(saved)
            except RamlabError as exc:  # damaged: unreadable, not YAML
                fix = (
                    "delete it and resume again (it is rebuilt from last.pt), or restore it from a copy"
                    if last.exists()
                    else "restore it from a copy (best.pt holds the run's config)"
                )
                raise RamlabError(f"{out}: {exc}; fix: {fix}") from None
            try:
                run_config = RunConfig.from_dict(values, where=str(saved))
            except RamlabError as exc:  # readable, but refused: edited, or by this version
                as_trained = load_checkpoint(last).get("config") if last.exists() else None
                if as_trained is not None and as_trained != values:
                    fix = "config.yaml was edited: delete it and resume again (it is rebuilt from last.pt)"
                else:
                    fix = (
                        "this version of ramlab refuses the run's config (its last.pt holds the same): "
                        "continue it with the code it was trained with (the commit in its history.jsonl "
                        "or last.pt), or train it anew"
                    )
                raise RamlabError(f"{out}: {exc}. {fix}") from None
            state = load_checkpoint(last) if last.exists() else None
            if state is not None:
                check_config_matches(out, values, run_config, state)
            try:
                config, unused = keep_unused(run_config, config, checkpointed=last.exists())
                changed = resume_changes(run_config, config)
            except RamlabError as exc:
                raise RamlabError(f"{out}: {exc}") from None
            if unused:
                print(
                    f"note: this run does not use {', '.join(unused)} (its config.yaml); it keeps "
                    "its own values and ignores the ones given",
                    file=sys.stderr,
                )
            if state is not None:
                check_epochs_cover(out, config, state)
            trained_at = state.get("commit") if state is not None else None
            other_code = bool(trained_at) and trained_at != commit
            trained_on = state.get("device") if state is not None else None
            same = {"cuda": "cuda:0"}  # torch's default GPU, named either way
            other_device = (
                bool(trained_on)
                and device is not None
                and same.get(trained_on, trained_on) != same.get(device, device)
            )
            if changed or other_code or other_device:  # before config.yaml: a crash keeps it
                line = {"command": command, "changed": changed}
                if other_code:
                    line |= {"commit": commit, "trained_at": trained_at}
                if other_device:
                    line |= {"device": device, "trained_on": trained_on}
                    print(f"note: this run trained on {trained_on} until now; it goes on on {device} "
                          "(history.jsonl records it)", file=sys.stderr)  # fmt: skip
                with (out / "history.jsonl").open("a") as history:
                    history.write(json.dumps(line) + "\n")
            if changed:  # the new budget is the run's config from now on; history says when
                save_yaml(saved, config.to_dict())
                print(
                    "note: this resume changes "
                    + ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
                    + " (history.jsonl records it)",
                    file=sys.stderr,
                )
            return state, config
        if last.exists() or (out / "result.json").exists():
            raise RamlabError(
                f"{out} already holds a run; pass --resume to continue it, or choose another --out"
            )
    save_yaml(saved, config.to_dict())
    return None, config


def check_config_matches(out: Path, values: dict[str, Any], saved: RunConfig, state: dict[str, Any]) -> None:
    """config.yaml (`values` as read, `saved` as parsed) must be the config last.pt trained
    with: every field last.pt names present, and equal but for what a resume may change (a
    resume records those in history.jsonl and saves them to both). One cut short still parses,
    its missing fields at their defaults, and would go on training another run."""
    as_trained = state.get("config")
    if not isinstance(as_trained, dict):
        return
    lost = [key for key in ("model", "data") if key in as_trained and key not in values]
    for section in ("train", "model_config"):
        held = values.get(section) if isinstance(values.get(section), dict) else {}
        trained_fields = as_trained.get(section) if isinstance(as_trained.get(section), dict) else {}
        lost += [f"{section}.{key}" for key in trained_fields if key not in held]
    differ = [f"{', '.join(lost)} missing"] if lost else []
    try:
        trained = RunConfig.from_dict(as_trained, where="last.pt")
    except RamlabError as exc:  # config.yaml, accepted, cannot be what last.pt trained with
        differ.append(f"last.pt's own is refused by this version: {exc}")
        trained = None
    if trained is not None:
        old, new = trained.to_dict(), saved.to_dict()
        differ += [
            f"{section}.{key}: {new[section].get(key)!r} in config.yaml, {value!r} in last.pt"
            for section in ("train", "model_config")
            for key, value in old[section].items()
            if new[section].get(key) != value and not (section == "train" and key in RESUME_MAY_CHANGE)
        ]
        differ += [
            f"{key}: {new[key]!r} in config.yaml, {old[key]!r} in last.pt"
            for key in ("model", "data")
            if old[key] != new[key]
        ]
    if differ:
        raise RamlabError(
            f"{out}: config.yaml is not the config last.pt trained with ({'; '.join(differ)}): it was "
            "edited or cut short. Delete it and resume again (it is rebuilt from last.pt), or restore "
            "it from a copy; to change a setting, start a new run"
        )


def check_epochs_cover(out: Path, config: RunConfig, state: dict[str, Any]) -> None:
    """A resume's epochs must cover what the run has trained (a partly done epoch counts):
    fewer would leave result.json, best.pt and config.yaml disagreeing on the run's length."""
    trained = int(state.get("epoch", 0)) + (1 if state.get("step_in_epoch", 0) else 0)
    if config.train.epochs < trained:
        raise RamlabError(
            f"{out}: --epochs {config.train.epochs} is fewer than the {trained} epoch(s) this run "
            f"has trained{' (the last partly)' if state.get('step_in_epoch', 0) else ''}; give "
            f"--epochs {trained} or more (an early stop or --time-budget ends it sooner)"
        )


def read_result(path: Path) -> dict[str, Any] | None:
    """A finished run's record (result.json, or result.previous.json), or None when the file
    is missing or damaged (cut short, edited, unreadable): a resume of the run tests its
    best.pt again and rewrites it (the same weights give the same test error)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or "test_error" not in record:
        return None
    if record["test_error"] is not None and not _finite(record["test_error"]):
        return None
    if not _finite(record.get("val_error")):
        return None
    return record


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def set_aside_result(out: Path) -> None:
    """Before a finished run trains on (a resume with a larger budget): its result.json
    would no longer describe best.pt once an epoch beats it, so it becomes
    result.previous.json, and the run reads as unfinished until its new end. One set aside
    by an earlier extension becomes result.previous.STEPS.json: every test read is kept."""
    finished = out / "result.json"
    if not finished.exists():
        return
    previous = out / "result.previous.json"
    earlier = read_result(previous)
    if earlier is not None:  # set aside before, by an earlier extension: kept under its steps
        previous.replace(out / f"result.previous.{earlier.get('steps', 'earlier')}.json")
    finished.replace(previous)


def restore_result(out: Path, steps: int) -> None:
    """Put back a result set aside by `set_aside_result` when the run ends at the very step it
    describes (its budget raised, then lowered again before a new step was kept): its
    best.pt was tested already, and the test split is read once."""
    previous = out / "result.previous.json"
    finished = out / "result.json"
    if not finished.exists() and (read_result(previous) or {}).get("steps") == steps:
        previous.replace(finished)


def kept_result(out: Path, steps: int, *, test: bool) -> dict[str, Any] | None:
    """The result a resume that trained nothing returns as it is, or None to test best.pt
    (again) and write it. The test split is read once: a tested run keeps its result; an
    untested one (a tuning run chosen as the final model) is tested if the resume asks for
    it (`--test true`); a damaged result.json is rewritten from the same best.pt."""
    restore_result(out, steps)  # set aside, then nothing trained
    finished = out / "result.json"
    if not finished.exists():
        return None
    previous = read_result(finished)
    if previous is None:
        print(f"{finished} is damaged: testing best.pt again to rewrite it", file=sys.stderr)
        return None
    return previous if previous["test_error"] is not None or not test else None


def result_record(
    config: RunConfig,
    pos: Position,
    test_result: Evaluation | None,
    *,
    params: int,
    stop_reason: str | None,
    device: str,
    commit: str | None,
    command: str,
) -> dict[str, Any]:
    """result.json of a run that ended at `pos`, tested (`test_result`) or not (None)."""
    cfg = config.train
    return {
        "model": config.model,
        "data": config.data,
        "test_error": test_result and test_result.error,
        "val_error": pos.best_val_error,
        "per_glimpse_test_error": test_result and test_result.per_step_error,
        "test_loss": test_result and test_result.loss,
        "test_count": test_result and test_result.count,
        "test_protocol": test_result and test_result.protocol,
        "test_in_box": test_result and test_result.in_box,
        "params": params,
        "epochs": cfg.epochs,
        "epochs_run": pos.epoch,
        "stopped_early": pos.epoch < cfg.epochs,
        "stop_reason": stop_reason,
        "best_epoch": pos.best_epoch,
        "steps": pos.global_step,
        "rollouts_seen": pos.rollouts_seen,
        "train_seconds": pos.train_seconds,
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "device": device,
        "commit": commit,
        "command": command,
        "config": config.to_dict(),
    }
