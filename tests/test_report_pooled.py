"""A reward against its reference across datasets: which runs pair up (the study's groups),
and the report's sentence, end to end on fake runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import write_run

from ramlab.config import to_dict
from ramlab.models.ram import RAMConfig
from ramlab.report import write_report
from ramlab.report.pooled import PooledComparison, Stratum, group_name, pooled_comparisons
from ramlab.report.runs import Run


def run(name: str, data: str, seed: int) -> Run:
    config = {"model": "ram", "data": data, "train": {"seed": seed}}
    return Run(Path(name), name, config, None, [], None, None)


def test_a_runs_group_is_its_folder_less_dataset_and_seed():
    assert group_name([run("runs/ram6-bbox-alone-cluttered60-seed0", "cluttered60", 0)]) == "ram6-bbox-alone"
    seeds = [run(f"runs/g-mnist-seed{s}", "mnist", s) for s in range(3)]
    assert group_name(seeds) == "g"
    assert group_name([run("runs/mine", "mnist", 0)]) is None  # not a study's layout
    assert group_name([run("runs/g-mnist-seed1", "mnist", 0)]) is None  # the seed in its config is 0
    assert group_name([run("runs/-mnist-seed0", "mnist", 0)]) is None
    assert group_name([run("runs/a-mnist-seed0", "mnist", 0), run("runs/b-mnist-seed1", "mnist", 1)]) is None


def test_pairs_seen_on_two_datasets_or_more_are_pooled():
    one, two = Stratum("mnist", [1.0, 2.0], [3.0, 4.0]), Stratum("translated60", [1.0, 2.0], [3.0, 4.0])
    pooled = pooled_comparisons(
        [
            ("ig", "sparse", one),
            ("ig", "sparse", two),
            ("ig", "sparse", Stratum("mnist", [9.0], [9.0])),  # a dataset's second entry: not twice
            ("bbox", "sparse", one),  # one dataset: nothing to pool
            (None, "sparse", two),  # outside a study
        ]
    )
    assert [(c.group, c.reference, [s.data for s in c.strata]) for c in pooled] == [
        ("ig", "sparse", ["mnist", "translated60"])
    ]
    assert pooled[0].strata[0] is one
    assert pooled[0].test.p_value == 2 / 36
    assert one.statistic_term == (1.5 - 3.5) / 2.5  # the test's term: over the pooled mean, 2.5
    assert one.change == pytest.approx(-4 / 7)  # the reader's: 1.5 is 4/7 below 3.5
    assert Stratum("mnist", [1.0], [0.0]).change is None  # no change relative to no error
    # A quarter of the reference's error is 75% less, never more than 100% (over the pooled
    # mean it read -1.2: "120% lower").
    assert Stratum("mnist", [1.0, 1.0], [4.0, 4.0]).change == -0.75
    # Changes of both signs (-90% and +200%) average to "55% higher", while the test's sum over
    # pooled means (-1.64 + 1.0) says lower: no percentage then, the datasets' errors only.
    mixed = PooledComparison(
        "a", "b", (Stratum("mnist", [0.1], [1.0]), Stratum("translated60", [30.0], [10.0]))
    )
    sentence = mixed.sentence()
    assert "% (1 + 1 seeds)): p = " in sentence and "test error than" not in sentence


def test_groups_whose_rewards_differ_by_dataset_are_named_as_groups_not_as_one_reward():
    # The paper preset's sparse groups train `sparse` on mnist and `0.1*sparse` elsewhere: the
    # sentence said "lower error than the sparse reward" over strata of two references.
    strata = (
        Stratum("mnist", [1.0, 1.1, 1.2], [2.0, 2.1, 2.2], "sparse+infogain", "the sparse reward"),
        Stratum(
            "cluttered60",
            [2.0, 2.1, 2.2],
            [3.0, 3.1, 3.2],
            "0.1*sparse+infogain",
            "the sparse reward at 0.1 (`0.1*sparse`)",
        ),
    )
    pooled = PooledComparison("ram6-infogain", "ram6-sparse", strata)
    assert pooled.rewards_differ and pooled.versus == "`ram6-sparse`"
    sentence = pooled.sentence()
    assert sentence.startswith(
        "`ram6-infogain` against `ram6-sparse` over 2 datasets (mnist (`sparse+infogain` against the "
        "sparse reward) 1.10 against 2.10 % (3 + 3 seeds); cluttered60 (`0.1*sparse+infogain` against "
        "the sparse reward at 0.1 (`0.1*sparse`)) 2.10 against 3.10 % (3 + 3 seeds)): the rewards "
        "differ by dataset, so this compares the two groups as the study trains them"
    )
    assert sentence.endswith(
        "p = 0.005: lower error than `ram6-sparse` across the datasets, beyond the seed-to-seed spread."
    )
    same = PooledComparison(
        "ram6-infogain", "ram6-sparse", (strata[0], Stratum("translated60", [1.0], [2.0], "sparse+infogain"))
    )
    assert not same.rewards_differ and same.versus == "the sparse reward"
    assert "differ by dataset" not in same.sentence()


def test_the_report_tests_a_group_across_datasets(tmp_path):
    errors = {  # 3 + 3 seeds wholly apart on both: 2 of the 20 x 20 relabellings, p = 0.005
        ("ram6-sparse", "sparse"): {"translated60": (1.2, 1.3, 1.4), "cluttered60": (4.0, 4.2, 4.4)},
        ("ram6-infogain", "sparse+0.1*infogain@0"): {
            "translated60": (0.9, 1.0, 1.1),
            "cluttered60": (3.0, 3.2, 3.4),
        },
    }
    for (group, reward), by_data in errors.items():
        for data, values in by_data.items():
            for seed, error in enumerate(values):
                write_run(
                    tmp_path,
                    f"{group}-{data}-seed{seed}",
                    model="ram",
                    data=data,
                    seed=seed,
                    error=error,
                    model_config=to_dict(RAMConfig(glimpses=6, reward=reward)),
                )
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    across = report[report.index("### Across datasets") :]
    # translated60: 1.0 / 1.3 - 1 = -0.231; cluttered60: 3.2 / 4.2 - 1 = -0.238; their mean -0.234
    assert (
        "`ram6-infogain` against `ram6-sparse` over 2 datasets (translated60 1.00 against 1.30 % "
        "(3 + 3 seeds); cluttered60 3.20 against 4.20 % (3 + 3 seeds)): 23% lower test error than "
        "`ram6-sparse`'s on average over the datasets, p = 0.005: lower error than the sparse reward "
        "across the datasets, beyond the seed-to-seed spread." in across
    )
    # Per dataset the same seeds say only that more are needed.
    assert report.count("more seeds are needed") == 2
