"""Robustness sweeps read back (`robustness.json`, written by `ramlab.robustness`): what a
sweep measured, and a label's seeds pooled level by level. Pure functions of the files'
dicts, with no torch (the dataset specs they look up are NumPy's), for the report and its
figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ramlab.data.datasets import resolve_spec
from ramlab.errors import RamlabError
from ramlab.protocols import ONE_PASS
from ramlab.shifts import one_place

# What an older sweep drew differently (sweep_kind's last field; "" for a current sweep).
REDRAWN = "redrawn"  # before format 5: each level's scenes drawn with a seed of its own
FIRST_ROWS = "first-rows"  # format 5, limited, a model that draws: the first N digits' numbers
MOVED_BY_SCALE = "moved-by-scale"  # formats 5-6, a scale shift: each level's box placed anew
SMALL_MOVED = "small-moved"  # before format 4, a scale shift on one place: a smaller digit moved


# 2: a limited sweep reads datasets.evaluation_subset's test digits (1: the first N).
# 3: a translate level whose window is the whole canvas is the dataset's own spec, so it reads
#    the run's test scenes exactly (2 drew new placements under another spec key).
# 4: on a dataset of one placement (mnist) a scale level below 1 keeps the digit where it was
#    (3 let the smaller digit move within the window it opened). Other datasets' format 3
#    sweeps are format 4's (`sweep_format`).
# 5: every level draws from the stream of the run's own spec (4 seeded each level by its own,
#    so each level placed and cluttered its digits anew), and a warp from a stream of its own.
# 6: a limited sweep gives each digit the random numbers (a random first glimpse or policy's
#    places, sampling noise) that a sweep of the whole split gives it (5 gave the N digits
#    those of the split's first N rows). Other format 5 sweeps are format 6's (`sweep_format`).
# 7: a scale level keeps each digit's centre where the dataset's scene put it (6 placed the
#    resized box anywhere in its own window: a smaller digit reached nearer the edges, a larger
#    one stayed nearer the centre, so the curve mixed a translation into the scale). Format 6
#    sweeps without a scale shift, or on a dataset of one place (its rule is unchanged), are
#    format 7's (`sweep_format`; `sweeps.sweep_kind` marks the others MOVED_BY_SCALE).
FORMAT = 7


def same_sweep(
    previous: dict[str, Any], *, limit: int | None, sample: bool, split: str = "test", rollouts: int = 1
) -> bool:
    """Whether a saved sweep's scenes and policy are those asked for (its levels aside)."""
    wanted = (split, sample or rollouts > 1, rollouts, limit, False, "")
    return sweep_format(previous) == FORMAT and sweep_kind(previous) == wanted


def sweep_format(sweep: dict[str, Any]) -> int:
    """A saved sweep's format, read as the next where the change to it made no difference:
    format 3 as 4 but on a dataset of one placement (format 4 changed only its scale levels),
    format 5 as 6 where it read all digits or a model without glimpses (format 6 changed only
    a limited sweep's random numbers; `sweeps.sweep_kind`), and 6 as 7 where it has no scale
    shift or its dataset has one place (format 7 changed only the scale levels elsewhere).
    Format 5 changed every level but a dataset's own, so sweeps before it are older sweeps now."""
    found = format_of(sweep)
    if found == 5 and sweep_kind(sweep)[-1] != FIRST_ROWS:
        found = 6
    if found == 6:
        return 6 if sweep_kind(sweep)[-1] == MOVED_BY_SCALE else 7
    if found == 3:  # an unknown or damaged dataset stays the older format
        return 4 if _one_place(sweep.get("data")) is False else 3
    return found


def sweep_kind(sweep: dict[str, Any]) -> tuple[str, bool, int, int | None, bool, str]:
    """What a sweep's numbers measure beyond its levels: (split, sampled, rollouts, limit,
    first_n, older). first_n: a limited sweep of format 1 read the split's first N digits
    (MNIST's test file is ordered by source, its first half the harder), later ones a fixed
    random subset. older: REDRAWN before format 5, whose levels' scenes differ from a later
    sweep's at the same level; SMALL_MOVED for one before format 4 with a scale shift on a
    dataset of one place (mnist), whose scale levels below 1 let the smaller digit move; FIRST_ROWS for a limited format 5 sweep of a model that draws
    random numbers (a random first glimpse or policy, sampling), which gave its N digits the
    numbers of the split's first N rows, not their own (format 6); MOVED_BY_SCALE for a
    format 5 or 6 sweep with a scale shift on a dataset whose digits may lie in more than one
    place, whose scale levels placed the resized digit anywhere in the window its own box
    left, not on the centre the dataset gave it (format 7); "" otherwise. Only sweeps of one
    kind are averaged together."""
    limit = sweep.get("limit")
    found = format_of(sweep)
    older = REDRAWN if found < 5 else ""
    if found < 4 and _has_scale(sweep) and _one_place(sweep.get("data")) is not False:
        older = SMALL_MOVED  # and redrawn: its scale levels below 1 differ from format 4's
    elif found == 5 and limit is not None and sweep.get("protocol") != ONE_PASS:
        older = FIRST_ROWS  # a policy mean from a centred start drew nothing: unknown here
    elif found in (5, 6) and _has_scale(sweep) and _one_place(sweep.get("data")) is not True:
        older = MOVED_BY_SCALE
    return (
        sweep.get("split", "test"),
        bool(sweep.get("sample")),
        sweep.get("rollouts", 1),
        limit,
        limit is not None and found < 2,
        older,
    )


def _has_scale(sweep: dict[str, Any]) -> bool:
    shifts = sweep.get("shifts")
    return isinstance(shifts, dict) and "scale" in shifts


def without_moved_scale(sweep: dict[str, Any]) -> dict[str, Any]:
    """A sweep as format 7 reads it: one set apart only for its scale levels (MOVED_BY_SCALE)
    without its scale shift, which is then the one shift to sweep again; any other as it is."""
    if sweep_kind(sweep)[-1] != MOVED_BY_SCALE:
        return sweep
    return {**sweep, "shifts": {k: v for k, v in sweep["shifts"].items() if k != "scale"}}


def _one_place(data: Any) -> bool | None:
    """Whether dataset `data` puts every digit in one place; None where it is unknown (a
    dataset this version does not have) or damaged, which each caller reads as the older."""
    try:
        return one_place(resolve_spec(data)) if isinstance(data, str) else None
    except RamlabError:
        return None


def format_of(sweep: dict[str, Any]) -> int:
    """A sweep's format as written; 1 (the oldest) where it has none or a damaged one."""
    found = sweep.get("format", 1)
    return found if isinstance(found, int) and not isinstance(found, bool) else 1


def errors_by_level(entries: Sequence[dict[str, Any]]) -> dict[float, list[float]]:
    """One shift's entries of several sweeps (a label's seeds) -> {level: the errors of the
    sweeps that have it}, over every level any of them has, in increasing order."""
    levels = sorted({level for entry in entries for level in entry["levels"]})
    return {
        level: [e["error"][e["levels"].index(level)] for e in entries if level in e["levels"]]
        for level in levels
    }


def training_level(entry: dict[str, Any]) -> float | tuple[float, float] | None:
    """A shift entry's `trained` as one level, or (low, high) for a range of augmentation;
    None where the entry does not say (or says it in a shape no sweep writes)."""
    trained = entry.get("trained")
    if isinstance(trained, list) and len(trained) == 2:
        low, high = float(trained[0]), float(trained[1])
        return low if low == high else (low, high)
    return None if trained is None or isinstance(trained, list) else float(trained)
