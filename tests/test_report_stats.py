"""The permutation test of the report's reward comparison, against cases counted by hand,
and the sentence the report writes for each reward against the sparse reward."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import table_row, write_run

from ramlab.config import to_dict
from ramlab.models.ram import RAMConfig
from ramlab.progress import CurvePoint
from ramlab.report import write_report
from ramlab.report.formatting import fmt_p
from ramlab.report.runs import Run, by_label
from ramlab.report.sections.rewards import (
    Comparison,
    comparisons,
    fmt_epochs_to,
    scale_controls,
    sparse_weight,
    speed_bar,
)
from ramlab.report.stats import binomial_se, permutation_test, stratified_permutation_test


def test_two_against_two_counts_the_six_relabellings():
    # Pooled 1, 2, 3, 4; the 6 ways to pick A and |mean(A) - mean(B)|:
    # {1,2} 2, {1,3} 1, {1,4} 0, {2,3} 0, {2,4} 1, {3,4} 2. Observed {1,2}: 2, reached by 2 of 6.
    test = permutation_test([1.0, 2.0], [3.0, 4.0])
    assert test.exact and test.relabellings == 6
    assert test.p_value == pytest.approx(2 / 6)
    assert test.smallest_p == pytest.approx(2 / 6)  # 2 + 2 seeds can never give p < 0.05


def test_a_middle_difference_counts_every_relabelling_as_far_out():
    # A = {1, 4}: |mean diff| 0, which every one of the 6 relabellings reaches.
    assert permutation_test([1.0, 4.0], [2.0, 3.0]).p_value == 1.0
    # A = {1, 3}: |diff| 1; reached by {1,3} {2,4} (1) and {1,2} {3,4} (2): 4 of 6.
    assert permutation_test([1.0, 3.0], [2.0, 4.0]).p_value == pytest.approx(4 / 6)


def test_three_and_four_seeds_a_side():
    # Complete separation: only the observed split and its mirror are as extreme.
    assert permutation_test([1, 2, 3], [4, 5, 6]).p_value == pytest.approx(2 / 20)
    test = permutation_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert (test.p_value, test.relabellings, test.smallest_p) == pytest.approx((2 / 70, 70, 2 / 70))
    assert permutation_test([5, 6, 7, 8], [1, 2, 3, 4]).p_value == pytest.approx(2 / 70)  # two-sided


def test_unequal_sizes_and_ties():
    # A = {0}, B = {1, 2}: mean diffs for A = {0}, {1}, {2} are -1.5, 0, 1.5: 2 of 3 as far.
    # The most extreme relabelling, |1.5|, is reached twice: no split of these values gives
    # p below 2/3 (the floor of distinct sizes, 1/3, assumed an extreme reached once).
    test = permutation_test([0.0], [1.0, 2.0])
    assert (test.p_value, test.relabellings, test.smallest_p) == pytest.approx((2 / 3, 3, 2 / 3))
    # Tied errors (a 10,000-scene test reads in steps of 0.01): pooled 1, 1, 2, 2, 3, 3 has
    # its extreme sums, 4 and 8, from {1,1,2} and {2,3,3} with either 2 or 3: 4 of 20, so no
    # outcome of these seeds could reach p < 0.05, as distinct values (2 of 20) would.
    test = permutation_test([1.0, 1.0, 2.0], [2.0, 3.0, 3.0])
    assert (test.p_value, test.smallest_p) == pytest.approx((4 / 20, 4 / 20))
    tied = stratified_permutation_test([([1.0, 1.0, 2.0], [2.0, 3.0, 3.0]), ([1.0, 2.0], [3.0, 4.0])])
    # The largest |S| takes each stratum's extreme with the same sign: sums 8 and 7 (2 x 1
    # ways) or 4 and 3 (2 x 1): 4 of 20 x 6.
    assert tied.smallest_p == pytest.approx(4 / (20 * 6))
    assert permutation_test([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    # Rounding must not split a tie: 0.1 + 0.2 != 0.3 in floating point.
    assert permutation_test([0.1, 0.2], [0.3, 0.0]).p_value == 1.0


def test_a_value_that_is_not_finite_is_refused_not_read_as_significant():
    # A NaN compares false with everything: counted, it would make no relabelling as extreme
    # as the observed one and read p = 0.
    for a, b in (([1.0, float("nan"), 2.0], [3.0, 4.0, 5.0]), ([1.0, 2.0], [3.0, float("inf")])):
        with pytest.raises(ValueError, match=r"finite values, got (nan|inf)"):
            permutation_test(a, b)
        with pytest.raises(ValueError, match="finite values"):
            stratified_permutation_test([([1.0, 2.0], [3.0, 4.0]), (a, b)])


def test_the_sentence_blames_ties_not_the_seed_count_when_ties_raise_the_floor():
    # Pooled 1, 1, 1, 2, 2, 3, 3, 3: the extreme sums 5 and 11 are each reached twice (with
    # either 2), 4 of C(8, 4) = 70 relabellings, where 4 + 4 untied seeds reach 2 of 70.
    tied = Comparison.of("x", "ref", [1.0, 1.0, 1.0, 2.0], [2.0, 3.0, 3.0, 3.0]).sentence()
    assert tied.endswith(
        "p = 0.057 over 4 + 4 seeds: the difference cannot be told from the seed-to-seed spread "
        "(nor shown to be none). No relabelling of these errors can reach p < 0.05: the smallest p "
        "they allow is 0.057, as several relabellings tie for the most extreme (4 + 4 seeds "
        "without such ties allow 0.029)."
    )
    untied = Comparison.of("x", "ref", [1.0, 2.0], [3.0, 4.0]).sentence()
    assert untied.endswith(
        "With 2 + 2 seeds no difference can reach p < 0.05 (the smallest p is 0.33): more seeds are needed."
    )


def test_a_p_value_is_never_rounded_across_the_significance_level():
    assert [fmt_p(p) for p in (0.33333, 0.0291, 1.0, 0.0495, 0.04999, 0.0504)] == [
        "0.33",
        "0.029",
        "1",
        "0.0495",
        "0.04999",
        "0.05",
    ]
    assert fmt_p(0.049999999) == "< 0.05"  # past the digits tried: never "0.05"


def test_many_seeds_fall_back_to_a_reproducible_monte_carlo_estimate():
    a, b = [1, 2, 3, 4, 5], [3, 4, 5, 6, 7]
    exact = permutation_test(a, b)
    sampled = permutation_test(a, b, max_exact=10, samples=4000)
    assert exact.exact and not sampled.exact and sampled.relabellings == 4000
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.03)
    assert permutation_test(a, b, max_exact=10, samples=4000) == sampled
    with pytest.raises(ValueError):
        permutation_test([], [1.0])


def fake_run(reward: str, seed: int, error: float, *, glimpses: int = 6) -> Run:
    config = {
        "model": "ram",
        "data": "translated60",
        "train": {"seed": seed},
        "model_config": {"reward": reward, "glimpses": glimpses},
    }
    return Run(
        path=Path(f"{reward}-{glimpses}-{seed}"),
        name=f"{reward}-{glimpses}-{seed}",
        config=config,
        result={"test_error": error},
        metrics=[],
        evaluation=None,
        robustness=None,
        label=f"ram (glimpses={glimpses}, reward={reward})",
    )


def sentences(runs: list[Run]) -> dict[str, str]:
    return {label: c.sentence() for label, c in comparisons(by_label(runs)).items()}


def test_each_reward_is_tested_against_the_sparse_reward_with_the_same_other_settings():
    runs = [
        *(fake_run("sparse", s, e) for s, e in enumerate([5.0, 6.0, 7.0, 8.0])),
        *(fake_run("sparse+bbox", s, e) for s, e in enumerate([1.0, 2.0, 3.0, 4.0])),
        *(fake_run("sparse+infogain", s, e) for s, e in enumerate([5.5, 8.5])),
        fake_run("infogain", 0, 3.0),
        fake_run("sparse+bbox", 0, 3.0, glimpses=4),
    ]
    said = sentences(runs)
    assert said["ram (glimpses=6, reward=sparse+bbox)"] == (
        "`ram (glimpses=6, reward=sparse+bbox)` against `ram (glimpses=6, reward=sparse)`: mean test "
        "error 2.50 % against 6.50 %, p = 0.029 over 4 + 4 seeds: lower error than the sparse reward, "
        "beyond the seed-to-seed spread."
    )
    # 15 ways to pick 2 of 5.5, 8.5, 5, 6, 7, 8; the pairs summing to 13, 13, 13.5, 13.5 are
    # nearer the centre (40 / 3) than the observed 14: p = 11 / 15.
    assert said["ram (glimpses=6, reward=sparse+infogain)"].endswith(
        "mean test error 7.00 % against 6.50 %, p = 0.73 over 2 + 4 seeds: the difference cannot be "
        "told from the seed-to-seed spread (nor shown to be none). With 2 + 4 seeds no difference can reach p < 0.05 (the smallest p "
        "is 0.067): more seeds are needed."
    )
    assert "not testable with one seed (1 + 4 seeds)" in said["ram (glimpses=6, reward=infogain)"]
    assert said["ram (glimpses=4, reward=sparse+bbox)"] == (
        "`ram (glimpses=4, reward=sparse+bbox)`: no run with the sparse reward and otherwise the same "
        "config to test against."
    )
    assert len(said) == 4  # the sparse reward is the reference, not compared with itself


def test_each_other_reward_is_also_tested_against_the_sparse_reward_at_another_weight():
    """The scale control: 0.1*sparse is compared with sparse like any reward, and every reward
    that is not the sparse reward alone is compared with it too, on otherwise the same config."""
    assert [
        sparse_weight(r) for r in ("sparse", "0.1*sparse", "sparse+bbox", "0.1*infogain", "nonsense")
    ] == [
        1.0,
        0.1,
        None,
        None,
        None,
    ]
    runs = [
        *(fake_run("sparse", s, e) for s, e in enumerate([9.0, 10.0, 11.0, 12.0])),
        *(fake_run("0.1*sparse", s, e) for s, e in enumerate([5.0, 6.0, 7.0, 8.0])),
        *(fake_run("0.1*infogain", s, e) for s, e in enumerate([1.0, 2.0, 3.0, 4.0])),
        fake_run("bbox", 0, 3.0, glimpses=4),  # no control with 4 glimpses
    ]
    said = sentences(runs)
    # All four of one side below all four of the other: 2 of the 70 relabellings are as far
    # apart (either way round), p = 2 / 70.
    assert said["ram (glimpses=6, reward=0.1*sparse)"].endswith(
        "mean test error 6.50 % against 10.50 %, p = 0.029 over 4 + 4 seeds: lower error than the "
        "sparse reward, beyond the seed-to-seed spread."
    )
    controls = scale_controls(by_label(runs), comparisons(by_label(runs)))
    assert [c.sentence() for c in controls] == [
        "`ram (glimpses=6, reward=0.1*infogain)` against `ram (glimpses=6, reward=0.1*sparse)`: mean "
        "test error 2.50 % against 6.50 %, p = 0.029 over 4 + 4 seeds: lower error than the sparse "
        "reward at 0.1 (`0.1*sparse`), beyond the seed-to-seed spread."
    ]  # neither sparse reward is its own control, and the 4-glimpse bbox has none
    fewer = by_label(runs[:4] + runs[8:])
    assert scale_controls(fewer, comparisons(fewer)) == []  # no control trained: nothing to say


def test_a_reward_added_to_the_sparse_reward_at_a_tenth_is_tested_against_a_tenth_first():
    # 0.1*sparse+bbox differs from 0.1*sparse in the box penalty alone, from sparse in the
    # sparse reward's scale too: the table's test is the former, the control the latter.
    runs = [
        *(fake_run("sparse", s, e) for s, e in enumerate([9.0, 10.0, 11.0, 12.0])),
        *(fake_run("0.1*sparse", s, e) for s, e in enumerate([5.0, 6.0, 7.0, 8.0])),
        *(fake_run("0.1*sparse+bbox", s, e) for s, e in enumerate([1.0, 2.0, 3.0, 4.0])),
        *(fake_run("sparse+bbox", s, e) for s, e in enumerate([1.0, 2.0, 3.0, 4.0])),
    ]
    groups = by_label(runs)
    against = comparisons(groups)
    tenth, whole = "ram (glimpses=6, reward=0.1*sparse+bbox)", "ram (glimpses=6, reward=sparse+bbox)"
    assert against[tenth].reference == "ram (glimpses=6, reward=0.1*sparse)"
    assert (
        against[tenth]
        .sentence()
        .endswith(
            "mean test error 2.50 % against 6.50 %, p = 0.029 over 4 + 4 seeds: lower error than the "
            "sparse reward at 0.1 (`0.1*sparse`), beyond the seed-to-seed spread."
        )
    )
    assert against[whole].reference == "ram (glimpses=6, reward=sparse)"
    assert {(c.label, c.reference, c.versus) for c in scale_controls(groups, against)} == {
        (tenth, "ram (glimpses=6, reward=sparse)", "the sparse reward"),
        (whole, "ram (glimpses=6, reward=0.1*sparse)", "the sparse reward at 0.1 (`0.1*sparse`)"),
    }
    # Without runs at its own weight, the paper's weight is the reference.
    alone = by_label(runs[:4] + runs[8:12])
    assert comparisons(alone)[tenth].reference == "ram (glimpses=6, reward=sparse)"
    assert scale_controls(alone, comparisons(alone)) == []


def rewards_in_report(tmp_path, errors_by_reward: dict[str, tuple[float, ...]]) -> str:
    """The written report's rewards section, for RAM runs on translated60 with these test
    errors, one seed an error."""
    for reward, errors in errors_by_reward.items():
        for seed, error in enumerate(errors):
            write_run(
                tmp_path,
                f"ram-{reward}-seed{seed}",
                model="ram",
                data="translated60",
                seed=seed,
                error=error,
                model_config=to_dict(RAMConfig(glimpses=6, reward=reward)),
            )
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    return report[report.index("## Reward structures") :]


def test_the_report_tests_each_reward_against_the_scale_control(tmp_path):
    """End to end: the written report's rewards section has the control's paragraph."""
    rewards = rewards_in_report(
        tmp_path, {"sparse": (10.0, 12.0), "0.1*sparse": (6.0, 7.0), "0.1*infogain": (4.0, 5.0)}
    )
    controls = rewards[rewards.index("Against the sparse reward at another weight") :]
    assert (
        "reward=0.1*infogain)` against" in controls
        and "reward=0.1*sparse)`: mean test error 4.50 % against 6.50 %" in controls
    )
    # 0.1*sparse is itself tested against sparse, in the table.
    assert table_row(rewards, "`0.1*sparse`")[2:5] == ["6.50 ± 0.71", "0.33", "2"]


def test_two_seeds_a_side_say_that_no_difference_could_show(tmp_path):
    """End to end: the p column and the sentence in the written report."""
    rewards = rewards_in_report(tmp_path, {"sparse": (10.0, 12.0), "sparse+bbox": (4.0, 5.0)})
    assert table_row(rewards, "`sparse+bbox`")[2:5] == ["4.50 ± 0.71", "0.33", "2"]
    assert table_row(rewards, "`sparse`")[2:5] == ["11.00 ± 1.41", "—", "2"]
    assert (
        "mean test error 4.50 % against 11.00 %, p = 0.33 over 2 + 2 seeds: the difference cannot be "
        "told from the seed-to-seed spread (nor shown to be none). With 2 + 2 seeds no difference can reach p < 0.05 (the smallest p "
        "is 0.33): more seeds are needed." in rewards
    )
    assert "Against the sparse reward at another weight" not in rewards  # no control trained


# ---- learning speed: the first epoch under twice the sparse reward's best ----------------------
def curve(*errors: float) -> list[CurvePoint]:
    """Validation errors at epochs 1, 2, ..."""
    return [CurvePoint(epoch=i, seconds=None, rollouts=None, error=e) for i, e in enumerate(errors, 1)]


def test_the_speed_bar_is_twice_the_mean_of_the_reference_runs_best_errors():
    reference = [curve(30.0, 4.0, 5.0), curve(20.0, 7.0, 6.0), []]
    assert speed_bar(reference) == 2 * (4.0 + 6.0) / 2  # lowest of each, not the last; empty left out
    assert speed_bar([[], []]) is None


def test_epochs_to_the_bar_is_the_first_epoch_at_or_under_it():
    runs = [curve(30.0, 10.0, 12.0, 9.0)]
    assert fmt_epochs_to(runs, 10.0) == "2.0"  # at the bar counts, not only under it
    assert fmt_epochs_to(runs, 9.5) == "4.0"  # the first, though epoch 3 rose again
    assert fmt_epochs_to(runs, 8.0) == "— (0 of 1 runs)"  # never at or under it


def test_runs_that_never_reach_the_bar_are_counted_not_averaged():
    fast, slow, never = curve(9.0), curve(20.0, 15.0, 9.0), curve(20.0)
    assert fmt_epochs_to([fast, slow], 10.0) == "2.0 ± 1.4"  # epochs 1 and 3
    assert fmt_epochs_to([fast, slow, never], 10.0) == "2.0 ± 1.4 (2 of 3 runs)"
    assert fmt_epochs_to([never], 10.0) == "— (0 of 1 runs)"
    assert fmt_epochs_to([fast], None) == "—"  # no sparse run to set the bar


# ---- across datasets: relabelled within each ---------------------------------------------------
def test_two_datasets_multiply_their_relabellings_and_weigh_each_by_its_mean():
    # Each dataset: A = {1, 2} against {3, 4}; its six relabellings move sum(A') - 5 by -2, -1,
    # 0, 0, 1, 2, weighed by n / (k (n - k) mean) = 4 / (2 * 2 * 2.5) = 0.4. Observed: -2 in both,
    # -1.6; of the 36 pairs only (-2, -2) and (2, 2) are as far out: p = 2 / 36.
    test = stratified_permutation_test([([1, 2], [3, 4]), ([1, 2], [3, 4])])
    assert test.exact and test.relabellings == 36
    assert test.p_value == pytest.approx(2 / 36) and test.smallest_p == pytest.approx(2 / 36)
    # Ten times the errors on the second weigh the same (relative to its own mean).
    assert stratified_permutation_test([([1, 2], [3, 4]), ([10, 20], [30, 40])]).p_value == pytest.approx(
        2 / 36
    )
    # Opposite differences cancel: every relabelling is as far out as 0.
    assert stratified_permutation_test([([1, 2], [3, 4]), ([3, 4], [1, 2])]).p_value == 1.0
    # A dataset of zero errors adds nothing: the first's 2 of 6.
    zero = stratified_permutation_test([([0, 0], [0, 0]), ([1, 2], [3, 4])])
    assert zero.p_value == pytest.approx(2 / 6) and zero.smallest_p == pytest.approx(2 / 6)
    level = stratified_permutation_test([([1.2], [1.2]), ([1, 2], [3, 4])])  # equal: ties only
    assert level.p_value == pytest.approx(2 / 6) and level.smallest_p == pytest.approx(2 / 6)


def test_one_dataset_is_the_plain_test_and_four_reach_far_below_it():
    for a, b in (([1, 2, 3], [4, 5, 6]), ([1.0, 4.0], [2.0, 3.0]), ([0.0], [1.0, 2.0])):
        assert stratified_permutation_test([(a, b)]).p_value == pytest.approx(permutation_test(a, b).p_value)
    # 3 + 3 seeds wholly apart on each of four datasets: 2 of 20^4 relabellings.
    four = [([1.1, 2.0, 3.5], [4.0, 5.0, 6.0])] * 4
    test = stratified_permutation_test(four)
    assert test.exact and test.relabellings == 160_000 and test.p_value == pytest.approx(2 / 160_000)
    sampled = stratified_permutation_test(four, max_exact=10, samples=3000)
    assert not sampled.exact and sampled.p_value == pytest.approx(1 / 3001)  # (0 hits + 1) / (3000 + 1)
    assert stratified_permutation_test(four, max_exact=10, samples=3000) == sampled  # reproducible
    # The sampled test relabels within each dataset too: here its estimate is the exact p
    # (10 of 400), where shuffling the twelve errors across the two datasets would read 0.9.
    apart = [([1.0, 2.0, 3.0], [2.5, 3.5, 4.0]), ([10.0, 30.0, 20.0], [40.0, 25.0, 50.0])]
    assert stratified_permutation_test(apart).p_value == pytest.approx(10 / 400)
    estimate = stratified_permutation_test(apart, max_exact=10, samples=20_000).p_value
    assert estimate == pytest.approx(10 / 400, abs=0.005)  # its standard error: 0.0011
    with pytest.raises(ValueError):
        stratified_permutation_test([])
    with pytest.raises(ValueError):
        stratified_permutation_test([([1.0], [])])


def test_binomial_se_by_hand():
    assert binomial_se(50.0, 100) == pytest.approx(5.0)  # √(0.25 / 100) = 0.05
    assert binomial_se(1.5, 10_000) == pytest.approx(0.12155, abs=1e-5)  # √(0.015 × 0.985 / 10,000)
    assert binomial_se(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="scenes must be >= 1"):
        binomial_se(1.0, 0)
