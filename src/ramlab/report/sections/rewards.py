"""Section: the reward structures compared on each dataset: test error over seeds, with a
permutation test of each reward against the sparse reward, learning speed, and where the
glimpses go.

Learning speed is the first epoch whose validation error is at most SPEED_FACTOR times the
sparse reference's best (its seeds' mean of their lowest validation error): a bar every
reward can reach, set by the reward it is compared with (the sparse reward alone, at the
reward's own sparse weight where that trained), so the column says how much sooner or later a
reward gets near that reward's final accuracy. On cluttered60 (recipe, seed
0, results/rewards-recipe/) the box penalty passes it at epoch 26 and the sparse reward's two
seeds at 42 and 43, though the box penalty's best validation error ends level with theirs.

A reward is tested against the runs whose config is the same but for the reward, which is
the sparse reward alone, at the reward's own sparse weight where runs at that weight trained
(`0.1*sparse+0.1*infogain@0` against `0.1*sparse`: only the new term differs), else the
paper's `sparse`: the two-sided permutation test of `ramlab.report.stats` over the
seeds' test errors. p >= SIGNIFICANCE says the difference cannot be told from the
seed-to-seed spread (not that there is none); with fewer than MIN_SEEDS seeds on a side
there is no test, and the report says so. Each comparison is tested on its own, with no
correction for their number, and the report says that too. A study group compared with the
same reference group on several datasets is also tested across them (`ramlab.report.pooled`):
one dataset's 3 + 3 seeds cannot reach p < 0.05, four datasets' can.

Where the sparse reward alone also trained at another weight (`0.1*sparse` beside `sparse`,
the paper preset's scale control), each other reward is tested against that too: with
`policy_trains_core` a reward's weight sets how hard REINFORCE pulls on the core against the
cross-entropy (Adam sets the policy's own step whatever the weight), so a new reward's lead
over `sparse` may be its scale rather than its form (results/rewards-recipe/).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ramlab.errors import RamlabError
from ramlab.progress import CurvePoint, best, time_to, val_curve
from ramlab.report.doc import Doc
from ramlab.report.formatting import fmt_mean_std, fmt_p, fmt_some
from ramlab.report.inputs import ReportInputs
from ramlab.report.pooled import Stratum, group_name, pooled_comparisons
from ramlab.report.runs import Run, by_label, links
from ramlab.report.stats import MAX_EXACT, SAMPLES, SIGNIFICANCE, PermutationTest, permutation_test

MIN_SEEDS = 2  # per reward: one seed says nothing about the spread between seeds
SPEED_FACTOR = 2.0  # the learning-speed bar: this many times the sparse reward's best val error

HEADERS = [
    "reward",
    "model",
    "test error %",
    "p vs sparse",
    "seeds",
    "val error after epoch 1 %",
    "best epoch",
    f"epochs to val ≤ {SPEED_FACTOR:g}× sparse's best",
    "placed glimpses in bbox %",
    "their distance to bbox (px)",
    "runs",
]


def _chosen_mean(where: list[dict], key: str) -> list[float]:
    """Each run's mean of eval.json's per-glimpse `where[key]` over the glimpses its policy
    placed (the second on: the first is where `first_location` puts it, the same under every
    reward); a run with one glimpse has none."""
    return [statistics.fmean(w[key][1:]) for w in where if len(w[key]) > 1]


@dataclass(frozen=True)
class Comparison:
    """A reward's test errors against the sparse reward's, on otherwise the same config."""

    label: str
    reference: str | None  # the sparse reward's label; None when no run matches
    errors: list[float]
    reference_errors: list[float]
    test: PermutationTest | None  # None when not testable
    versus: str = "the sparse reward"  # the reference's reward, in words

    @classmethod
    def of(
        cls,
        label: str,
        reference: str | None,
        errors: list[float],
        reference_errors: list[float],
        versus: str = "the sparse reward",
    ) -> Comparison:
        testable = reference is not None and min(len(errors), len(reference_errors)) >= MIN_SEEDS
        test = permutation_test(errors, reference_errors) if testable else None
        return cls(label, reference, errors, reference_errors, test, versus)

    def sentence(self) -> str:
        """What the comparison says, plainly."""
        if self.reference is None:
            return f"`{self.label}`: no run with the sparse reward and otherwise the same config to test against."
        mean, reference = statistics.fmean(self.errors), statistics.fmean(self.reference_errors)
        head = f"`{self.label}` against `{self.reference}`: mean test error {mean:.2f} % against {reference:.2f} %"
        seeds = f"{len(self.errors)} + {len(self.reference_errors)} seeds"
        test = self.test
        if test is None:
            return (
                f"{head}; not testable with one seed ({seeds}), so the difference may be "
                "seed-to-seed spread alone."
            )
        head += f", p = {fmt_p(test.p_value)} over {seeds}" + ("" if test.exact else " (Monte Carlo)")
        if test.p_value < SIGNIFICANCE:
            side = "lower" if mean < reference else "higher"
            return f"{head}: {side} error than {self.versus}, beyond the seed-to-seed spread."
        text = f"{head}: the difference cannot be told from the seed-to-seed spread (nor shown to be none)."
        if test.smallest_p >= SIGNIFICANCE:
            untied = test.untied_p
            if test.smallest_p <= untied * (1 + 1e-9):
                text += (
                    f" With {seeds} no difference can reach p < {SIGNIFICANCE:g} (the smallest p is "
                    f"{fmt_p(test.smallest_p)}): more seeds are needed."
                )
            else:  # equal errors (or equal gaps) let several relabellings share the extreme
                text += (
                    f" No relabelling of these errors can reach p < {SIGNIFICANCE:g}: the smallest p "
                    f"they allow is {fmt_p(test.smallest_p)}, as several relabellings tie for the "
                    f"most extreme ({seeds} without such ties allow {fmt_p(untied)})."
                )
        return text


def _reward(run: Run) -> str:
    return run.config["model_config"]["reward"]


def _test_errors(runs: list[Run]) -> list[float]:
    return [r.result["test_error"] for r in runs]


def _all_but_reward(groups: dict[str, list[Run]]) -> dict[str, dict]:
    """Each label's experiment settings, its reward left out."""
    return {
        label: {k: v for k, v in runs[0].settings.items() if k != "model_config.reward"}
        for label, runs in groups.items()
    }


def _weights(reward: str) -> dict[str, float] | None:
    """A reward's terms and weights, None for one this version cannot read."""
    from ramlab.rewards import parse_reward  # imports torch: only once a report compares rewards

    try:
        return parse_reward(reward)
    except RamlabError:
        return None


def own_sparse_weight(reward: str) -> float | None:
    """The weight of the sparse term in `reward` (`0.1*sparse+bbox`: 0.1), None without one
    (or for a reward this version cannot read)."""
    return (_weights(reward) or {}).get("sparse")


def sparse_weight(reward: str) -> float | None:
    """The weight of the sparse reward when `reward` is the sparse reward alone (`sparse`: 1,
    `0.1*sparse`: 0.1); None for any other reward, or one this version cannot read."""
    weights = _weights(reward) or {}
    return weights["sparse"] if set(weights) == {"sparse"} else None


def speed_bar(reference: list[list[CurvePoint]]) -> float | None:
    """SPEED_FACTOR x the mean over the reference's runs of each one's lowest validation error;
    None without a validated run."""
    bests = [best(curve).error for curve in reference if curve]
    return SPEED_FACTOR * statistics.fmean(bests) if bests else None


def fmt_epochs_to(curves: list[list[CurvePoint]], bar: float | None) -> str:
    """Mean ± std over the runs that reach the bar (the first epoch at most `bar`), with how
    many did when not all."""
    if bar is None:
        return "—"
    reached = [point.epoch for point in (time_to(c, bar) for c in curves) if point is not None]
    text = fmt_mean_std(reached, 1)
    return text if len(reached) == len(curves) else f"{text} ({len(reached)} of {len(curves)} runs)"


def _versus(groups: dict[str, list[Run]], reference: str) -> str:
    weight = sparse_weight(_reward(groups[reference][0]))
    if weight == 1.0:
        return "the sparse reward"
    return f"the sparse reward at {weight:g} (`{_reward(groups[reference][0])}`)"


def _sparse_alone(groups: dict[str, list[Run]], label: str, rest: dict[str, dict]) -> list[str]:
    """The labels under the sparse reward alone (at any weight) that differ from `label` only
    in the reward (`rest`: `_all_but_reward(groups)`)."""
    return [
        other
        for other, runs in groups.items()
        if other != label and rest[other] == rest[label] and sparse_weight(_reward(runs[0])) is not None
    ]


def comparisons(groups: dict[str, list[Run]]) -> dict[str, Comparison]:
    """Each label not under the sparse reward alone at the paper's weight of 1, against the
    label under the sparse reward alone that differs from it only in the reward: at the
    label's own sparse weight where one trained (a new reward added to `0.1*sparse` is tested
    against `0.1*sparse`, so the new term is the only difference), else at 1. The sparse
    reward alone at another weight is tested against it at 1 (the scale itself)."""
    out, rest = {}, _all_but_reward(groups)
    for label, runs in groups.items():
        reward = _reward(runs[0])
        if sparse_weight(reward) == 1.0:
            continue
        own = 1.0 if sparse_weight(reward) is not None else own_sparse_weight(reward) or 1.0
        weights = {s: sparse_weight(_reward(groups[s][0])) for s in _sparse_alone(groups, label, rest)}
        reference = next((s for s, w in weights.items() if w == own), None)
        reference = reference or next((s for s, w in weights.items() if w == 1.0), None)
        out[label] = Comparison.of(
            label,
            reference,
            _test_errors(runs),
            _test_errors(groups[reference]) if reference else [],
            _versus(groups, reference) if reference else "the sparse reward",
        )
    return out


def scale_controls(groups: dict[str, list[Run]], against: dict[str, Comparison]) -> list[Comparison]:
    """Each label whose reward is not the sparse reward alone, against every label under the
    sparse reward alone at a weight other than its reference's in `against` (`comparisons`),
    with otherwise the same config: the control for a reward's scale."""
    out, rest = [], _all_but_reward(groups)
    for label, runs in groups.items():
        if sparse_weight(_reward(runs[0])) is not None:
            continue
        reference = against[label].reference if label in against else None
        for control in (c for c in _sparse_alone(groups, label, rest) if c != reference):
            out.append(
                Comparison.of(
                    label,
                    control,
                    _test_errors(runs),
                    _test_errors(groups[control]),
                    _versus(groups, control),
                )
            )
    return out


def rewards_section(doc: Doc, inputs: ReportInputs) -> None:
    from ramlab.viz.curves import plot_rewards

    doc.heading(2, "Reward structures", "rewards")
    rewarded = [  # a random policy (`policy: random`) has a reward in its config but no use for it
        r
        for r in inputs.runs
        if "reward" in r.config.get("model_config", {})
        and r.config["model_config"].get("policy", "learned") != "random"
    ]
    compared = [d for d in inputs.datasets if len({r.label for r in rewarded if r.data == d}) > 1]
    if not compared:
        doc.para("Fewer than two reward structures were trained on any dataset.")
        return
    doc.para(
        "Runs of the attention model under each reward structure: accuracy (every seed), learning "
        "speed (validation error per epoch; best epoch; the first epoch whose validation error is "
        f"at most {SPEED_FACTOR:g}× the best of the sparse reward of `p vs sparse`, its seeds' mean, with otherwise the same "
        "config) and where the glimpses go (share of glimpse "
        "centres inside the digit's bounding box, and mean distance to it, on the test scenes, over "
        "the glimpses the policy places: the second on, since `first_location` places the first "
        "whatever the reward)."
    )
    doc.para(
        "`p vs sparse`: two-sided permutation test of the difference in mean test error between the "
        "reward and the sparse reward alone with otherwise the same config (at the reward's own "
        "sparse weight where that trained, else at the paper's 1; the sentences below name it), "
        "over seeds (exact: every way of "
        f"relabelling the seeds' errors between the two; past {MAX_EXACT:,} ways, a fixed random "
        f"{SAMPLES:,} of them). p ≥ {SIGNIFICANCE:g}: the difference cannot be told from the "
        "seed-to-seed spread (which does not show there is none). Each comparison is tested on its "
        f"own, with no correction for their number: of k comparisons with no real difference, about "
        f"{SIGNIFICANCE:g}·k would pass p < {SIGNIFICANCE:g} by chance."
    )
    pooled = []  # (group, reference group, the dataset's errors and rewards): over the datasets
    for data in compared:
        groups = by_label(r for r in rewarded if r.data == data)
        against = comparisons(groups)
        rows, errors, inside = [], {}, {}
        val_curves = {label: [val_curve(r.metrics) for r in runs] for label, runs in groups.items()}
        for label, runs in groups.items():
            errors[label] = _test_errors(runs)
            reference = against[label].reference if label in against else label
            where = [r.evaluation["where"] for r in runs if (r.evaluation or {}).get("where")]
            if where:
                inside[label] = [w["inside_bbox_percent"] for w in where]
            first_val = [c[0].error for c in val_curves[label] if c]
            test = against[label].test if label in against else None
            rows.append(
                [
                    f"`{_reward(runs[0])}`",
                    f"`{label}`",
                    fmt_mean_std(errors[label]),
                    fmt_p(test.p_value) if test else "—",
                    str(len(runs)),
                    fmt_some(first_val, len(runs), 1),
                    fmt_some(
                        [r.result["best_epoch"] for r in runs if "best_epoch" in r.result], len(runs), 1
                    ),
                    fmt_epochs_to(val_curves[label], speed_bar(val_curves[reference]) if reference else None),
                    fmt_some(_chosen_mean(where, "inside_bbox_percent"), len(runs), 1),
                    fmt_some(_chosen_mean(where, "distance_to_bbox_px"), len(runs), 1),
                    links(runs),
                ]
            )
        doc.heading(3, f"{data}")
        doc.table(HEADERS, rows)
        for comparison in against.values():
            doc.para(comparison.sentence())
        controls = scale_controls(groups, against)
        for comparison in [*against.values(), *controls]:
            if comparison.reference is not None:
                reward = _reward(groups[comparison.label][0])
                stratum = Stratum(
                    data, comparison.errors, comparison.reference_errors, reward, comparison.versus
                )
                pair = (group_name(groups[comparison.label]), group_name(groups[comparison.reference]))
                pooled.append((*pair, stratum))
        if controls:
            doc.para(
                "Against the sparse reward at another weight than the table's reference, the control "
                "for a reward's scale (with "
                "`policy_trains_core` the weight sets how hard REINFORCE pulls on the core; Adam sets the "
                "policy's own step whatever it is):"
            )
            for comparison in controls:
                doc.para(comparison.sentence())
        path = plot_rewards(
            errors,
            inputs.fig_path(f"rewards-{data}"),
            val_curves={k: [c for c in v if c] for k, v in val_curves.items()},
            inside=inside,
            title=f"Reward structures on {data}",
            styles=inputs.styles,
        )
        doc.figure(
            path, f"Reward structures on {data}: error per seed, learning speed, where the glimpses go."
        )
    across = pooled_comparisons(pooled)
    if across:
        doc.heading(3, "Across datasets")
        doc.para(
            "Each study group against the same reference group on every dataset both trained on: a "
            "stratified permutation test, the seeds' test errors relabelled within each dataset, of "
            "the sum over the datasets of each one's difference in mean test error relative to its "
            "mean (so a dataset of large errors weighs no more than one of small errors). It asks "
            "whether the reward changes the error across the datasets; one dataset's 3 + 3 seeds "
            "cannot reach p < 0.05 (its smallest p is 0.1), four datasets' can. Every dataset's seeds "
            "count, one a side too (not testable on that dataset alone, it adds a sign to flip). Each "
            "pair is tested on its own, with no correction for their number."
        )
        for comparison in across:
            doc.para(comparison.sentence())
