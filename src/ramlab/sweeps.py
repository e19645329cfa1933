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


def sweep_kind(sweep: dict[str, Any]) -> tuple[str, bool, int, int | None, bool, str]:
    """What a sweep's numbers measure beyond its levels: (split, sampled, rollouts, limit,
    first_n, older). first_n: a limited sweep of format 1 read the split's first N digits
    (MNIST's test file is ordered by source, its first half the harder), later ones a fixed
    random subset. older: REDRAWN before format 5, whose levels' scenes differ from a later
    sweep's at the same level; FIRST_ROWS for a limited format 5 sweep of a model that draws
    random numbers (a random first glimpse or policy, sampling), which gave its N digits the
    numbers of the split's first N rows, not their own (format 6); MOVED_BY_SCALE for a
    format 5 or 6 sweep with a scale shift on a dataset whose digits may lie in more than one
    place, whose scale levels placed the resized digit anywhere in the window its own box
    left, not on the centre the dataset gave it (format 7); "" otherwise. Only sweeps of one
    kind are averaged together."""
    limit = sweep.get("limit")
    found = format_of(sweep)
    older = REDRAWN if found < 5 else ""
    if found == 5 and limit is not None and sweep.get("protocol") != ONE_PASS:
        older = FIRST_ROWS  # a policy mean from a centred start drew nothing: unknown here
    elif found in (5, 6) and _has_scale(sweep) and not _one_place(sweep.get("data")):
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


def _one_place(data: Any) -> bool:
    """Whether dataset `data` puts every digit in one place (False: unknown or damaged)."""
    try:
        return isinstance(data, str) and one_place(resolve_spec(data))
    except RamlabError:
        return False


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
