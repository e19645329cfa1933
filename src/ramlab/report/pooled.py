"""A reward against its reference over every dataset at once: one study group against another
(`ram6-infogain` against `ram6-sparse`), the seeds' test errors relabelled within each
dataset (`ramlab.report.stats.stratified_permutation_test`).

One dataset's 3 + 3 seeds cannot give p < 0.05 (the smallest p is 0.1), so per dataset the
report can only say "more seeds are needed"; the study's question is whether a reward beats
the sparse reward across the paper's datasets, and over four datasets the same seeds can
answer it (the smallest p is 1.25e-5). The groups are the study's: a run's directory is
`GROUP-DATA-seedN` (`ramlab.study.plan.run_name`), so runs of one group on several datasets
pair up even where their labels differ (a group's reward may differ by dataset, `per_data`).
Runs outside a study's layout are left out of this test.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ramlab.report.formatting import fmt_p
from ramlab.report.runs import Run
from ramlab.report.stats import SIGNIFICANCE, PermutationTest, stratified_permutation_test


def group_name(runs: list[Run]) -> str | None:
    """The study group of runs of one label on one dataset (None: not one group of a study)."""
    names = set()
    for run in runs:
        folder = Path(run.name).name
        suffix = f"-{run.data}-seed{run.seed}"
        if not folder.endswith(suffix) or len(folder) == len(suffix):
            return None
        names.add(folder.removesuffix(suffix))
    return names.pop() if len(names) == 1 else None


@dataclass(frozen=True)
class Stratum:
    data: str
    errors: list[float]
    reference_errors: list[float]
    reward: str = ""  # the group's reward on this dataset
    versus: str = "the sparse reward"  # the reference's reward on this dataset, in words

    @property
    def change(self) -> float | None:
        """(mean - reference's mean) / reference's mean: -0.25 is a quarter less error than the
        reference (None where the reference's mean is 0). For the reader; the test's statistic
        divides by the pooled mean instead (`stratified_permutation_test`)."""
        reference = statistics.fmean(self.reference_errors)
        return None if reference == 0 else statistics.fmean(self.errors) / reference - 1

    @property
    def statistic_term(self) -> float:
        """(mean - reference's mean) / the pooled mean: this dataset's term of the test's
        statistic, whose sum's sign says which side a significant difference is on."""
        pooled = statistics.fmean([*self.errors, *self.reference_errors])
        if pooled == 0:
            return 0.0
        return (statistics.fmean(self.errors) - statistics.fmean(self.reference_errors)) / pooled


@dataclass(frozen=True)
class PooledComparison:
    """A group's test errors against its reference group's, dataset by dataset."""

    group: str
    reference: str
    strata: tuple[Stratum, ...]

    @property
    def rewards_differ(self) -> bool:
        """Whether either group trains another reward on some dataset (a preset's `per_data`):
        then the test compares the groups as trained, not one reward with another."""
        return len({(s.reward, s.versus) for s in self.strata}) > 1

    @property
    def versus(self) -> str:
        """The reference in words: its reward where it is one on every dataset."""
        return f"`{self.reference}`" if self.rewards_differ else self.strata[0].versus

    @property
    def test(self) -> PermutationTest:
        return stratified_permutation_test([(s.errors, s.reference_errors) for s in self.strata])

    def sentence(self) -> str:
        test, strata = self.test, self.strata
        changes = [s.change for s in strata]
        differ = self.rewards_differ
        each = "; ".join(
            f"{s.data}{f' (`{s.reward}` against {s.versus})' if differ else ''} "
            f"{statistics.fmean(s.errors):.2f} against {statistics.fmean(s.reference_errors):.2f} % "
            f"({len(s.errors)} + {len(s.reference_errors)} seeds)"
            for s in strata
        )
        head = f"`{self.group}` against `{self.reference}` over {len(strata)} datasets ({each}): "
        if differ:
            head += (
                "the rewards differ by dataset, so this compares the two groups as the study "
                "trains them, not one reward with another; "
            )
        if None not in changes and (all(c < 0 for c in changes) or all(c > 0 for c in changes)):
            # (of mixed signs, their mean could say "higher" where the test's sum says lower)
            mean_change = statistics.fmean(changes)
            head += (
                f"{abs(mean_change) * 100:.0f}% {'lower' if mean_change < 0 else 'higher'} test error than "
                f"`{self.reference}`'s on average over the datasets, "
            )
        head += f"p = {fmt_p(test.p_value)}" + ("" if test.exact else " (Monte Carlo)")
        if test.p_value < SIGNIFICANCE:
            side = "lower" if sum(s.statistic_term for s in strata) < 0 else "higher"
            return f"{head}: {side} error than {self.versus} across the datasets, beyond the seed-to-seed spread."
        text = f"{head}: the difference cannot be told from the seed-to-seed spread (nor shown to be none)."
        if test.smallest_p >= SIGNIFICANCE:
            text += f" The smallest p these seeds allow is {fmt_p(test.smallest_p)}: more seeds are needed."
        return text


def pooled_comparisons(
    entries: Iterable[tuple[str | None, str | None, Stratum]],
) -> list[PooledComparison]:
    """`entries`: each dataset's comparisons as (group, reference group, the dataset's
    errors and rewards). The pairs of study groups compared on two datasets or more, in the
    order first met, each dataset once (its first entry); runs of no study group are left out."""
    pairs: dict[tuple[str, str], dict[str, Stratum]] = {}
    for group, reference, stratum in entries:
        if group is None or reference is None:
            continue
        pairs.setdefault((group, reference), {}).setdefault(stratum.data, stratum)
    return [
        PooledComparison(group, reference, tuple(strata.values()))
        for (group, reference), strata in pairs.items()
        if len(strata) >= 2
    ]
