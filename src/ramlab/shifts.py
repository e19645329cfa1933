"""The distribution shifts of a robustness sweep: which SceneSpec field each sets, its default
levels, and each level's spec (`ramlab.robustness` sweeps them; its docstring says what each
shift does to the scenes)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ramlab.data.scenes import DIGIT, SceneSpec, placement_range
from ramlab.errors import RamlabError, unknown_name


def one_place(base: SceneSpec) -> bool:
    """Whether `base` puts every digit in one place (28×28 MNIST: no window to move in)."""
    low, high = placement_range(base, base.footprint)
    return low == high


@dataclass(frozen=True)
class Shift:
    """One kind of distribution shift: which SceneSpec field it sets, and to what."""

    name: str
    field: str  # the SceneSpec field the level replaces
    label: str  # axis label, with its unit
    levels: tuple[float, ...]  # default levels (translate: computed from the canvas)
    integer: bool = False

    def spec(self, base: SceneSpec, level: float) -> SceneSpec:
        if self.name in ("rotate", "scale"):
            value: Any = (float(level), float(level))
        elif self.integer:
            value = int(level)
        else:
            value = float(level)
        if self.name == "translate" and _whole_canvas(base, value):
            value = None  # the whole canvas: the dataset's own spec, key and scenes
        spec = dataclasses.replace(base, **{self.field: value})
        if self.name == "scale" and level < 1 and base.max_offset is None and one_place(base):
            # A smaller digit's box opens a placement window the run never saw: keep it centred.
            spec = dataclasses.replace(spec, max_offset=0)
        return spec

    def default_levels(self, base: SceneSpec) -> list[float]:
        if self.name == "translate":
            widest = max(0, (base.canvas - DIGIT) // 2)  # beyond it the window is the whole canvas
            return sorted({round(widest * i / 4) for i in range(5)})
        levels = []
        for level in self.levels:
            try:
                self.spec(base, level)
            except RamlabError:
                continue  # e.g. a scale that does not fit a 28×28 canvas
            levels.append(level)
        return levels

    def trained(self, base: SceneSpec) -> Any:
        """The run's training value of the field (None for translate: the whole canvas)."""
        value = getattr(base, self.field)
        if self.name == "translate" and value is None:
            return max(0, (base.canvas - DIGIT) // 2)
        return list(value) if isinstance(value, tuple) else value

    def check_range(self, base: SceneSpec, level: float) -> None:
        """Refuse a level that only repeats another under a misleading label: a placement
        window wider than the canvas allows (it is the whole canvas), a rotation beyond a
        half turn (a turn of 270 degrees is one of -90)."""
        widest = max(0, (base.canvas - DIGIT) // 2)
        if self.name == "translate" and level > widest:
            raise RamlabError(
                f"robustness translate level {level}: on a {base.canvas}x{base.canvas} canvas a "
                f"{DIGIT} px digit moves at most ±{widest} px (that window is the whole canvas); "
                f"levels 0..{widest}"
            )
        if self.name == "rotate" and abs(level) > 180:
            raise RamlabError(f"robustness rotate level {level}: give degrees in -180..180")

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise RamlabError(f"robustness {self.name}: level {text!r} is not a number") from None
        if not math.isfinite(value):
            raise RamlabError(f"robustness {self.name}: level {text!r} is not a finite number")
        if self.integer:
            if value != int(value) or value < 0:
                raise RamlabError(f"robustness {self.name}: levels are whole numbers >= 0, got {text}")
            return int(value)
        return value


def _whole_canvas(base: SceneSpec, offset: int) -> bool:
    """Whether a placement window of ±`offset` px allows every place the whole canvas does."""

    def span(o: int | None) -> tuple[int, int]:
        return placement_range(dataclasses.replace(base, max_offset=o), base.footprint)

    return span(offset) == span(None)


SHIFTS: dict[str, Shift] = {
    "translate": Shift("translate", "max_offset", "placement window (± px from the centre)", (), True),
    "rotate": Shift("rotate", "rotation", "rotation (degrees)", (0.0, 15.0, 30.0, 45.0, 60.0)),
    "scale": Shift("scale", "scale", "digit scale (× its 28 px size)", (0.5, 0.75, 1.0, 1.3, 1.6)),
    "noise": Shift(
        "noise",
        "noise",
        "noise σ (intensity, [0, 1] scale; before clipping to it)",
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    ),
    "clutter": Shift("clutter", "clutter_count", "clutter pieces per image", (0, 2, 4, 8, 12, 16), True),
}


def shift(name: str) -> Shift:
    if name not in SHIFTS:
        raise unknown_name("robustness shift", name, SHIFTS)
    return SHIFTS[name]


def resolve_levels(base: SceneSpec, shifts: dict[str, Sequence[float] | None]) -> dict[str, list[float]]:
    """{shift: levels or None (defaults)} -> {shift: levels}, every level checked against the canvas."""
    out = {}
    for name, levels in shifts.items():
        kind = shift(name)
        chosen = kind.default_levels(base) if levels is None else [kind.parse(str(v)) for v in levels]
        if not chosen:
            raise RamlabError(f"robustness {name}: no level fits the {base.canvas}x{base.canvas} canvas")
        twice = sorted({level for level in chosen if chosen.count(level) > 1})
        if twice:
            raise RamlabError(f"robustness {name}: level {twice[0]:g} is given twice")
        for level in chosen:
            try:
                kind.spec(base, level)
            except RamlabError as exc:
                raise RamlabError(f"robustness {name} level {level}: {exc}") from None
            kind.check_range(base, level)
        out[name] = chosen
    return out


__all__ = ["SHIFTS", "Shift", "one_place", "resolve_levels", "shift"]
