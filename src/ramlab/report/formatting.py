"""Numbers as the report prints them: mean ± sample std, SI prefixes, durations, p-values."""

from __future__ import annotations

import math
import statistics


def mean_std(values: list[float]) -> tuple[float, float | None]:
    if not values:
        return math.nan, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt_mean_std(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def fmt_some(values: list[float], seeds: int, digits: int = 2) -> str:
    """`fmt_mean_std` of what `seeds` runs have (a file some lack), with (n=k) when it is fewer
    than all of them; — when none has it."""
    if not values:
        return "—"
    return fmt_mean_std(values, digits) + (f" (n={len(values)})" if len(values) < seeds else "")


def si(value: float | None) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.3g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def fmt_p(p: float) -> str:
    """A p-value to two significant digits: 0.33, 0.029, 1; more where two would round it
    across the significance level (0.0495 is 0.0495, not the 0.05 a verdict would contradict)."""
    from ramlab.report.stats import SIGNIFICANCE

    for digits in (2, 3, 4, 6):
        text = f"{p:.{digits}g}"
        if (float(text) < SIGNIFICANCE) == (p < SIGNIFICANCE):
            return text
    return f"< {SIGNIFICANCE:g}" if p < SIGNIFICANCE else text
