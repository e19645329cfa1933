"""Robustness: a trained run's test error on scenes shifted beyond what it was trained on.

    error[shift][i] = test error of the run's best model on its dataset's test scenes with
                      one scene parameter replaced by levels[shift][i]

(or its validation scenes, `split="val"`: for models that are not final, whose test split
must stay unread).

The scenes come from the scene generator with the run's own dataset spec and data seed, one
field replaced, so every level holds the same test digits in the same order, and every model
of a dataset sees the same scenes at a level (their errors are paired). Every level draws
from the random stream of the run's own spec and data seed, so levels share whatever their
shift leaves alone: a noise level is the run's test scenes with noise added (the same draws,
times σ), a clutter level the same scenes with the first N pieces of one sequence of clutter,
a rotation level the same scenes with every digit turned (the warp draws from a stream of
its own). At the dataset's own level, with all its digits, these are the run's split itself.
A translate level changes where a digit may lie: NumPy maps the same placement draws onto
the level's window, one each, so the digits move alike and the clutter and noise stay
(tests/test_robustness_pairing.py pins this), except at a level of a single place (translate
0), which draws no placements and so shifts the clutter's and noise's draws. A scale level
draws the places of the dataset's own digit box and puts the resized digit on the same
centre (since format 7; `generate_scenes`' `centres_of`): below scale 1 the size alone, above
it a digit near an edge also moved inwards as far as the canvas needs (at 60 px about half
the digits at 1.3, three quarters at 1.6, by up to 9 px). Sweeps before format 5 seeded each
level by its own spec, which drew every level's scenes anew (about ±0.25 points between two
levels at 3% error on 10,000 scenes).
The shifts:

    translate  max_offset   the placement window (± px from the centre) grows to the whole canvas
    rotate     rotation     every digit turned by exactly this angle (degrees, counter-clockwise)
    scale      scale        every digit resized by exactly this factor about the centre the
                            dataset's scene gave it (moved only as far as the canvas's edge
                            needs: a digit of 1.6 × 28 px near an edge of a 60 px canvas;
                            where the dataset has one place, as 28×28 mnist, it stays centred)
    noise      noise        Gaussian pixel noise of this σ on the [0, 1] intensity scale, the
                            sum clipped to [0, 1] (the black background keeps only the
                            positive half: less spread than σ, and brighter)
    clutter    clutter_count  this many clutter pieces (of the dataset's clutter size)

A sweep's JSON (`robustness.json`) holds, per shift, its levels and the error at each:
`{"shifts": {"rotate": {"levels": [0, 15, ...], "error": [1.2, 3.4, ...], "commit": ...}}}`,
each shift (since format 7) with the commit that measured it: a resumed sweep keeps its
earlier shifts, and the file's top-level `commit` and `command` are the last run's.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ramlab.data import datasets
from ramlab.data.datasets import resolve_spec
from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import Scenes, SceneSpec, Subset, generate_scenes
from ramlab.errors import RamlabError, unknown_name
from ramlab.evaluate import ONE_PASS, check_sampling, evaluate, protocol, protocol_of
from ramlab.files import check_json_target, write_json
from ramlab.models.base import FeedForwardModel
from ramlab.models.registry import model_class
from ramlab.shifts import SHIFTS, Shift, one_place, resolve_levels
from ramlab.sweeps import FORMAT, same_sweep, sweep_format, without_moved_scale

SWEEP_SPLITS = ("val", "test")


# Scenes of one level are the same for every run of a dataset: keep the last few in memory,
# within a memory budget, so that a study sweeping several runs makes a level once where its
# sweep fits (a whole cluttered100 test split is 100 MB and its default sweep 27 levels: there
# the oldest go first and each run's sweep makes its levels anew).
_SCENES: dict[tuple, Scenes] = {}
_SCENES_KEPT = 48
_SCENES_BYTES = 1 << 30


def _scene_bytes(scenes: Scenes) -> int:
    return scenes.images.nbytes + scenes.labels.nbytes + scenes.bboxes.nbytes


def shifted_scenes(
    spec: SceneSpec, *, base: SceneSpec, seed: int, limit: int | None, split: str = "test"
) -> Scenes:
    """The scenes of `spec` (a level of a shift of `base`, the run's dataset) for the digits of
    `split` (test, or val): the whole split (limit None: then a level equal to `base`
    reproduces the run's split exactly), or scenes of `limit` of its digits only
    (`datasets.evaluation_subset`'s, the same at every level), generated alone: many times
    faster than building the whole split and keeping a few, but not the same placements or
    clutter. Every level is drawn with `base`'s seed, so levels share what the shift leaves
    alone (the module's docstring); a scale level keeps the centres `base`'s scenes give
    their digits (`generate_scenes`' `centres_of`), but on a dataset of one place, whose
    smaller digits `Shift.spec` keeps in the middle."""
    if split not in SWEEP_SPLITS:
        raise unknown_name("robustness split", split, SWEEP_SPLITS)
    key = (spec, base, seed, limit, split)
    if key not in _SCENES:
        images, labels = datasets.split_digits(datasets.mnist_digits(), split)
        keep = datasets.evaluation_subset(len(labels), limit, split)
        # Not cached on disk: a sweep would leave dozens of 36 MB test sets behind.
        made = generate_scenes(
            spec,
            images[keep],
            labels[keep],
            seed=datasets.split_seed(base, seed, split),
            centres_of=None if one_place(base) else base.footprint,
        )
        made.subset = None if limit is None else Subset(keep, of=len(labels))
        while _SCENES and (
            len(_SCENES) >= _SCENES_KEPT
            or sum(map(_scene_bytes, _SCENES.values())) + _scene_bytes(made) > _SCENES_BYTES
        ):
            _SCENES.pop(next(iter(_SCENES)))  # the oldest
        _SCENES[key] = made
    return _SCENES[key]


def robustness_sweep(
    run_dir: str | Path,
    *,
    shifts: dict[str, Sequence[float] | None] | None = None,
    limit: int | None = None,
    sample: bool = False,
    rollouts: int = 1,
    split: str = "test",
    device: str = "auto",
    batch_size: int | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
    commit: str | None = None,
    progress: Callable[[str], None] | None = None,
    replace_stale: bool = False,
) -> dict[str, Any]:
    """Evaluate a run at every level of every shift; return (and write) the sweep's dict.

    `shifts` maps a shift name to its levels (None: the defaults); None sweeps every shift.
    `split` "val" reads the validation digits instead of the test digits. `sample` and
    `rollouts` choose the policy as `ramlab eval` does (`ramlab.evaluate`).
    With `json_path`, the file is rewritten after each shift, and shifts it already holds
    with the same levels, limit and policy are kept rather than redone (an interrupted
    sweep resumes). A file holding another kind of sweep (limit, split, policy) or a sweep of
    other weights (the run trained on since, or another run of the same name) is refused,
    or, with `replace_stale` (a study's own file, whose preset changed), replaced.
    """
    from ramlab.provenance import run_commit
    from ramlab.run import load_run, refuse_unread_test

    if split not in SWEEP_SPLITS:
        raise unknown_name("robustness split", split, SWEEP_SPLITS)
    config, model = load_run(run_dir, device=device)
    refuse_unread_test(run_dir, config, split)
    check_sampling(model, sample=sample, rollouts=rollouts)  # before any level is built
    batch_size = batch_size or config.train.eval_batch_size  # the trainer's, as ramlab eval
    base = resolve_spec(config.data)
    wanted = resolve_levels(base, shifts if shifts is not None else dict.fromkeys(SHIFTS))
    seed = config.train.data_seed
    result: dict[str, Any] = {
        "format": FORMAT,
        "run": str(run_dir),
        "model": config.model,
        "data": config.data,
        "split": split,
        "limit": limit,
        "sample": sample or rollouts > 1,
        "rollouts": rollouts,
        "seed": config.train.seed,
        "data_seed": seed,
        "weights": weights_digest(model),
        "protocol": protocol_of(model, sample=sample, rollouts=rollouts),
        "commit": commit or run_commit(),
        "command": command or shlex.join(["ramlab", *sys.argv[1:]]),
        "shifts": {},
    }
    previous = _previous_sweep(json_path, replace_stale=replace_stale)
    moved_scale = None  # a format 6 file's scale levels, which moved the digits: the rest is format 7's
    if previous is not None and (kept := without_moved_scale(previous)) is not previous:
        moved_scale, previous = previous["shifts"]["scale"].get("levels") or [], kept
    # Another run's sweep: another folder name, model, dataset or seed (the folder itself may
    # have moved with its study since).
    identity = ("model", "data", "seed")
    if previous is not None and (
        Path(str(previous.get("run", ""))).name != Path(run_dir).name
        or any(previous.get(key) != result[key] for key in identity)
    ):
        raise RamlabError(
            f"{json_path} holds the sweep of {previous.get('run')}, not of {run_dir}: "
            "choose another --json (or delete the file)"
        )
    # A saved sweep of the same kind and weights: its shifts at the same levels are kept, not
    # redone, and those this sweep does not ask for stay in the file.
    same = (
        previous is not None
        and same_sweep(previous, limit=limit, sample=sample, split=split, rollouts=rollouts)
        and previous.get("weights", result["weights"]) == result["weights"]  # older files: unknown
    )
    if previous is not None and not same and not replace_stale:
        raise RamlabError(
            f"{json_path} holds another sweep of {run_dir} ({_sweep_words(previous)}; this one: "
            f"{_sweep_words(result)}), which this one would replace: choose another --json, or "
            "delete the file"
        )
    # A shift kept from a file of before format 7 takes the file's commit as its own.
    saved = (
        {k: {"commit": previous.get("commit"), **v} for k, v in previous["shifts"].items()} if same else {}
    )
    if same and moved_scale is not None and "scale" not in wanted:
        print(
            f"{json_path}: its scale levels ({_levels_text(moved_scale)}) placed each resized digit "
            "anew (format 6), so they are dropped; a sweep of scale measures them as format 7 does",
            file=sys.stderr,
        )
    for name, levels in wanted.items():
        kept = saved.get(name, {}).get("levels")
        if kept is not None and kept != levels and not replace_stale and set(kept) - set(levels):
            raise RamlabError(
                f"{json_path} holds {name} at levels {_levels_text(kept)}; this sweep asks for "
                f"{_levels_text(levels)} and would drop {_levels_text(sorted(set(kept) - set(levels)))}: "
                f"ask for all of them (--shift {name} --levels {' '.join(_levels_text(sorted(set(kept) | set(levels))).split(', '))}), "
                "or choose another --json"
            )
    result["shifts"] = {k: v for k, v in saved.items() if k not in wanted}
    device_ = next(model.parameters()).device
    for name, levels in wanted.items():
        if saved.get(name, {}).get("levels") == levels:
            result["shifts"][name] = saved[name]
            continue
        kind = SHIFTS[name]
        errors, per_step, count = [], [], 0
        for level in levels:
            scenes = shifted_scenes(kind.spec(base, level), base=base, seed=seed, limit=limit, split=split)
            loader = SceneLoader(scenes, batch_size=batch_size, device=device_)
            evaluation = evaluate(model, loader, sample=sample, rollouts=rollouts)
            errors.append(evaluation.error)
            per_step.append(evaluation.per_step_error)
            count = evaluation.count
            if progress:
                progress(f"{name} {level:g}: error {evaluation.error:.2f}%")
        result["shifts"][name] = {
            "parameter": kind.field,
            "label": kind.label,
            "trained": kind.trained(config.training_spec()),  # with its augmentation
            "levels": levels,
            "error": errors,
            "per_step_error": per_step,
            "count": count,
            "commit": result["commit"],  # the file's is the last run's; a kept shift keeps its own
        }
        if json_path:
            write_json(json_path, result)
    if json_path:
        write_json(json_path, result)
    return result


def _levels_text(levels: Sequence[float]) -> str:
    return ", ".join(f"{level:g}" for level in levels)


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of a model's weights: which model a sweep measured."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _sweep_words(sweep: dict[str, Any]) -> str:
    limit = sweep.get("limit")
    policy = "sampled" if sweep.get("sample") else "policy mean"
    if str(sweep.get("protocol", "")).startswith("random"):
        policy = "random glimpse locations"
    digits = "all digits" if limit is None else f"{limit} digits"
    weights = f", weights {sweep['weights']}" if sweep.get("weights") else ""
    return (
        f"{sweep.get('split', 'test')} split, {digits}, {policy}, {sweep.get('rollouts', 1)} "
        f"rollout(s){weights}, format {sweep.get('format', 1)}"
    )


def _previous_sweep(path: str | Path | None, *, replace_stale: bool) -> dict[str, Any] | None:
    """The sweep saved at `path` to resume, or None. A damaged file is an error, unless it is
    the study's own (`replace_stale`), which is then swept afresh."""
    if not path or not Path(path).is_file():
        return None
    if not replace_stale and not _looks_like_a_sweep(Path(path)):  # a run's result.json: never "delete it"
        check_json_target(path, keys=("shifts",), what="a robustness sweep")
    try:
        return read_robustness(path)
    except RamlabError as exc:
        if not replace_stale:
            raise
        print(f"{exc}: sweeping again", file=sys.stderr)
        return None


def _looks_like_a_sweep(path: Path) -> bool:
    """A sweep's JSON (its "shifts" at the top), or one cut short (the key in its text): a
    damaged sweep, which may be deleted; anything else is another file, never to be."""
    text = path.read_text(errors="replace")
    try:
        return isinstance(data := json.loads(text), dict) and "shifts" in data
    except json.JSONDecodeError:
        return '"shifts"' in text


def read_robustness(path: str | Path) -> dict[str, Any]:
    """A sweep's JSON, checked for the keys the report and plots read."""
    path = Path(path)
    fix = "delete it (or choose another --json) to sweep again"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RamlabError(f"{path}: cannot read the robustness sweep ({exc}); {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("shifts"), dict):
        raise RamlabError(f"{path}: not a robustness sweep (no 'shifts'); {fix}")
    for name, entry in data["shifts"].items():
        levels = entry.get("levels") if isinstance(entry, dict) else None
        errors = entry.get("error") if isinstance(entry, dict) else None
        if not isinstance(levels, list) or not isinstance(errors, list) or len(levels) != len(errors):
            raise RamlabError(
                f"{path}: shift {name} is damaged (not a list of levels and one error per level); {fix}"
            )
    return data


def format_sweep(result: dict[str, Any]) -> str:
    """A plain-text table of a sweep, one block per shift."""
    split = {"val": "validation"}.get(result.get("split", "test"), "test")
    if issubclass(model_class(result["model"]), FeedForwardModel):
        how = ONE_PASS
    elif isinstance(result.get("protocol"), str):  # as evaluated (a random policy says so)
        how = result["protocol"]
    else:
        how = protocol(sample=bool(result.get("sample")), rollouts=int(result.get("rollouts") or 1))
    counts = sorted({e["count"] for e in result["shifts"].values() if isinstance(e.get("count"), int)})
    scenes = f"; {'/'.join(map(str, counts))} scenes a level" if counts else ""
    lines = [f"{result['run']} ({result['model']} on {result['data']}), {split} error % ({how}{scenes})"]
    for name, entry in result["shifts"].items():
        lines.append(f"{name}: {entry['label']} (trained: {entry['trained']})")
        for level, error in zip(entry["levels"], entry["error"], strict=True):
            mark = "" if math.isfinite(error) else " (n/a)"
            lines.append(f"  {level:>8g}  {error:6.2f}{mark}")
    return "\n".join(lines)


__all__ = [
    "FORMAT",
    "SHIFTS",
    "SWEEP_SPLITS",
    "Shift",
    "format_sweep",
    "read_robustness",
    "resolve_levels",
    "robustness_sweep",
    "same_sweep",
    "sweep_format",
]
