"""Is a difference in mean test error more than seed-to-seed spread? A permutation test.

    p = #{relabellings of the pooled errors with |mean(A') - mean(B')| >= |mean(A) - mean(B)|}
        / #{relabellings}

Two-sided, exact: every way of choosing which len(A) of the pooled values are called A is
counted (for 3 + 3 seeds, C(6, 3) = 20 ways), so the test assumes nothing about the shape of
the errors' distribution, which a handful of seeds could not show anyway. With more
relabellings than `max_exact`, a fixed-seed random sample of them is counted instead
(Monte Carlo, p = (hits + 1) / (samples + 1)). Few seeds bound how small p can be: for
n + n seeds it is at least 2 / C(2n, n) (0.33 for 2 + 2, 0.1 for 3 + 3, 0.029 for 4 + 4).

Beside it, `binomial_se`: the test set's own sampling error, √(p(1 − p) / N) for an error
rate p on N scenes (0.12 points at 1.5% on 10,000): how far a figure could move on another
test set of the same size, whatever the seeds.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb, isfinite, sqrt

SIGNIFICANCE = 0.05  # the conventional level; below it a difference is more than seed noise
MAX_EXACT = 200_000  # relabellings counted one by one; 10 + 10 seeds have 184,756 (well under a second)
SAMPLES = 20_000  # past MAX_EXACT: the standard error of a p near 0.05 is then about 0.0015


@dataclass(frozen=True)
class PermutationTest:
    """The outcome of `permutation_test`."""

    p_value: float
    relabellings: int
    """How many relabellings were counted (all of them when exact)."""
    exact: bool
    """All relabellings counted (True), or a random sample of them."""
    smallest_p: float
    """The smallest p-value the test can give: exact, that of these values' most extreme
    relabelling (ties raise it); sampled, that of groups of these sizes with distinct values."""
    untied_p: float = 0.0
    """The smallest p-value groups of these sizes could give with no ties (`permutation_test`'s;
    0 where not computed): above it, `smallest_p` was raised by ties among these values."""


def permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    max_exact: int = MAX_EXACT,
    samples: int = SAMPLES,
    seed: int = 0,
) -> PermutationTest:
    """Two-sided permutation test of equal means of `a` and `b` (see the module's docstring)."""
    pooled = _pooled(a, b)
    n, k = len(pooled), len(a)
    # mean(A') - mean(B') = n / (k (n - k)) * (sum(A') - k * total / n): compare the sums.
    centre = k * sum(pooled) / n
    observed = abs(sum(pooled[:k]) - centre)
    tolerance = 1e-9 * (1.0 + sum(abs(v) for v in pooled))  # equal up to rounding counts as equal
    total = comb(n, k)
    untied_p = (2 if 2 * k == n else 1) / total  # one relabelling and its mirror the extreme
    if total <= max_exact:
        stats = [abs(sum(chosen) - centre) for chosen in combinations(pooled, k)]
        return dataclasses.replace(_exact(stats, observed, tolerance), untied_p=untied_p)
    rng = random.Random(seed)
    hits = 0
    for _ in range(samples):
        rng.shuffle(pooled)
        hits += abs(sum(pooled[:k]) - centre) >= observed - tolerance
    return PermutationTest((hits + 1) / (samples + 1), samples, False, untied_p, untied_p)


def stratified_permutation_test(
    strata: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    max_exact: int = MAX_EXACT,
    samples: int = SAMPLES,
    seed: int = 0,
) -> PermutationTest:
    """Two-sided permutation test of one difference across strata (datasets): the values are
    relabelled within each stratum only, and the statistic is the sum over the strata of each
    one's difference in means relative to its pooled mean,

        S = sum_s (mean(A_s) - mean(B_s)) / mean(A_s + B_s)

    (a stratum whose pooled mean is 0 adds nothing), so a dataset of large errors weighs no
    more than one of small errors, and the strata's relabellings multiply: 3 + 3 seeds on each
    of 4 datasets have 20^4 = 160,000, the smallest p 1.25e-5 where one dataset's is 0.1. The
    pooled mean is the same under every relabelling of its stratum, so S only weighs each
    stratum's difference; with one stratum the test is `permutation_test`."""
    if not strata:
        raise ValueError("a stratified permutation test needs at least one stratum")
    parts, total, counted, symmetric, tolerance = [], 1, 1, True, 1e-9
    for a, b in strata:
        pooled = _pooled(a, b)
        n, k = len(pooled), len(a)
        mean = sum(pooled) / n
        # mean(A') - mean(B') = n / (k (n - k)) * (sum(A') - k * mean), over the pooled mean
        scale = 0.0 if mean == 0 else n / (k * (n - k) * mean)
        parts.append((pooled, k, scale, k * mean))
        total *= comb(n, k)
        if len(set(pooled)) > 1:  # a stratum of equal errors moves nothing: its relabellings tie
            counted *= comb(n, k)
            symmetric = symmetric and 2 * k == n
        tolerance += 1e-9 * scale * sum(abs(v) for v in pooled)
    observed = abs(sum(scale * (sum(pooled[:k]) - centre) for pooled, k, scale, centre in parts))
    smallest_p = (2 if symmetric else 1) / counted if counted > 1 else 1.0
    if total <= max_exact:
        sums = [0.0]
        for pooled, k, scale, centre in parts:
            values = [scale * (sum(chosen) - centre) for chosen in combinations(pooled, k)]
            sums = [x + v for x in sums for v in values]
        return _exact([abs(x) for x in sums], observed, tolerance)
    rng = random.Random(seed)
    hits = 0
    for _ in range(samples):
        x = sum(scale * (sum(rng.sample(pooled, k)) - centre) for pooled, k, scale, centre in parts)
        hits += abs(x) >= observed - tolerance
    return PermutationTest((hits + 1) / (samples + 1), samples, False, smallest_p)


def _pooled(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """`a` then `b` as floats, each side non-empty and every value finite: a NaN compares
    false with everything, so it would count no relabelling as extreme and read p = 0."""
    if not a or not b:
        raise ValueError("a permutation test needs at least one value on each side")
    pooled = [float(v) for v in (*a, *b)]
    bad = [v for v in pooled if not isfinite(v)]
    if bad:
        raise ValueError(f"a permutation test needs finite values, got {bad[0]} among {pooled}")
    return pooled


def _exact(stats: list[float], observed: float, tolerance: float) -> PermutationTest:
    """The exact test from every relabelling's |statistic|. Its smallest p is that of the
    most extreme relabelling of these values: tied errors (a 10,000-scene test reads in
    steps of 0.01 points) share extremes, and no difference of them can go below it."""
    hits = sum(x >= observed - tolerance for x in stats)
    extreme = max(stats)
    floor = sum(x >= extreme - tolerance for x in stats)
    return PermutationTest(hits / len(stats), len(stats), True, floor / len(stats))


def binomial_se(error_percent: float, scenes: int) -> float:
    """The binomial standard error, in percentage points, of an error rate of `error_percent`
    % measured on `scenes` independent scenes."""
    if scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {scenes}")
    p = error_percent / 100
    return 100 * sqrt(p * (1 - p) / scenes)


__all__ = [
    "MAX_EXACT",
    "SAMPLES",
    "SIGNIFICANCE",
    "PermutationTest",
    "binomial_se",
    "permutation_test",
    "stratified_permutation_test",
]
