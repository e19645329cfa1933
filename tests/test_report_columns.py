"""The report's columns and cells, one rule at a time, from hand-written run files (the whole
report from a made-up study: test_report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_report import table_row, write_run

from ramlab.cli import main
from ramlab.config import to_dict
from ramlab.models.ram import RAMConfig
from ramlab.report import write_report
from ramlab.robustness import FORMAT


def test_only_rams_whose_configs_say_so_count_as_trained_on_the_last_glimpse():
    from ramlab.report.runs import Run
    from ramlab.report.sections.errors import last_glimpse_only

    def run(model: str, model_config: dict) -> Run:
        config = {"model": model, "data": "mnist", "model_config": model_config}
        return Run(Path(model), model, config, None, [], None, None)

    last = run("ram", {"ce_all_steps": False})
    assert last_glimpse_only([last, last])
    assert not last_glimpse_only([last, run("ram", {"ce_all_steps": True})])  # every seed must say so
    assert not last_glimpse_only([run("ram", {})])  # a config that does not say
    assert not last_glimpse_only([run("fc", {"ce_all_steps": False})])  # one-shot models answer once


def test_robustness_pools_seeds_level_by_level_and_never_mixes_kinds(tmp_path):
    def sweep_of(name, levels, errors, **kind):
        model = name.split("-")[0]
        glimpses = {"glimpses": 6} if model == "ram" else None
        folder = write_run(
            tmp_path, name, model=model, data="mnist", seed=int(name[-1]), error=2.0, model_config=glimpses
        )
        entry = {
            "label": "rotation (degrees)",
            "trained": [0.0, 0.0],
            "levels": levels,
            "error": errors,
            "count": 50,
        }
        sweep = {"format": FORMAT, "limit": None, "sample": False, "shifts": {"rotate": entry}, **kind}
        (folder / "robustness.json").write_text(json.dumps(sweep))

    sweep_of("fc-seed0", [0.0, 15.0], [2.0, 4.0])
    sweep_of("fc-seed1", [0.0, 30.0], [4.0, 9.0])
    sweep_of("convnet-seed0", [0.0, 45.0], [1.0, 7.0])
    sweep_of("convnet-seed1", [0.0, 45.0], [90.0, 90.0], split="val")  # another kind: its own table
    sweep_of("ram-seed0", [0.0, 45.0], [5.0, 50.0], split="val")  # a RAM beside a CNN
    assert main(["report", str(tmp_path)]) == 0
    section = (tmp_path / "report.md").read_text()
    section = section[section.index("## Robustness to shifts") :]
    test, val = section.split("*validation split")
    # A CNN has no policy: its sweep is one forward pass, however the sweep was called.
    assert "*test split, all its digits, one forward pass*" in test
    assert val.startswith(
        ", all its digits, models with glimpses: policy mean, one rollout; the others: one forward pass*"
    )
    header = next(line for line in test.splitlines() if line.startswith("| model"))
    assert header.split("|")[2:6] == [" 0 (trained) ", " 15 ", " 30 ", " 45 "]
    fc = table_row(test, "`fc`")
    assert fc[1:5] == ["3.0 ± 1.4", "4.0 (n=1)", "9.0 (n=1)", "—"]
    assert "fc-seed0" in fc[5] and "fc-seed1" in fc[5]
    convnet = table_row(test, "`convnet`")  # one of its two seeds: the other's is in another table
    assert convnet[1:5] == ["1.0 (n=1)", "—", "—", "7.0 (n=1)"] and "convnet-seed1" not in convnet[5]
    assert table_row(val, "`convnet`")[1:3] == ["90.0 (n=1)", "90.0 (n=1)"]
    assert "50 validation scenes per level" in val
    assert "Not swept" not in section  # every seed has a sweep


def test_a_seed_without_a_sweep_is_counted_and_named_and_each_training_level_is_said(tmp_path):
    def run(name, data, errors, trained, rotate=True):
        folder = write_run(tmp_path, name, model="fc", data=data, seed=int(name[-1]), error=2.0)
        if rotate:
            entry = {
                "label": "rotation (degrees)",
                "trained": trained,
                "levels": [0.0, 30.0],
                "error": errors,
            }
            sweep = {"format": FORMAT, "limit": None, "sample": False, "shifts": {"rotate": entry}}
            (folder / "robustness.json").write_text(json.dumps(sweep))

    run("fc-seed0", "centred60", [1.0, 5.0], [0.0, 0.0])
    run("fc-seed1", "centred60", [3.0, 7.0], [0.0, 0.0])
    run("fc-seed2", "centred60", None, None, rotate=False)  # trained, not swept yet
    run("fc-seed3", "mnist", [1.0, 2.0], [0.0, 0.0])
    run("fc-seed4", "mnist", [3.0, 4.0], [30.0, 30.0])  # trained at 30° (augmentation)
    assert main(["report", str(tmp_path)]) == 0
    section = (tmp_path / "report.md").read_text()
    section = section[section.index("## Robustness to shifts") :]
    mnist, centred = section.split("### centred60")  # mnist's tables come first
    assert table_row(centred, "`fc`")[1:3] == ["2.0 ± 1.4 (n=2)", "6.0 ± 1.4 (n=2)"]  # of its 3 seeds
    assert "Not swept (no readable `robustness.json`" in centred and "`runs/fc-seed2`" in centred
    assert "| model | 0 (trained) | 30 | runs |" in centred
    # Two training levels in one table: neither is marked in its header, both are named.
    assert "| model | 0 | 30 | runs |" in mnist and "Trained at 0, 30 (by model)." in mnist
    assert table_row(mnist, "`fc`")[1:3] == ["2.0 ± 1.4", "3.0 ± 1.4"] and "Not swept" not in mnist


def test_the_epochs_column_is_the_epochs_trained_and_names_the_budget_of_an_early_stop(tmp_path):
    for seed, run in ((0, 120), (1, 300)):
        folder = write_run(tmp_path, f"fc-seed{seed}", model="fc", data="mnist", seed=seed, error=2.0)
        result = json.loads((folder / "result.json").read_text())
        (folder / "result.json").write_text(json.dumps({**result, "epochs": 300, "epochs_run": run}))
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model | test error"))
    column = [c.strip() for c in header.strip("|").split("|")].index("epochs run")
    assert table_row(report, "`fc`")[column] == "210 (max 300)"


def test_a_column_some_seeds_lack_says_how_many_it_averages(tmp_path):
    write_run(tmp_path, "ram-seed0", model="ram", data="translated60", seed=0, error=3.0, steps=[9.0, 3.0])
    write_run(tmp_path, "ram-seed1", model="ram", data="translated60", seed=1, error=5.0, steps=[9.0, 5.0])
    folder = write_run(
        tmp_path, "ram-seed2", model="ram", data="translated60", seed=2, error=4.0, steps=[9.0, 4.0]
    )
    evaluation = json.loads((folder / "eval.json").read_text())
    del evaluation["sampled"]  # this seed's evaluation did not sample
    (folder / "eval.json").write_text(json.dumps(evaluation))
    assert main(["report", str(tmp_path)]) == 0
    row = table_row((tmp_path / "report.md").read_text(), "`ram`")
    assert row[1] == "4.00 ± 1.00" and row[3] == "3"
    assert row[2] == "5.00 ± 1.41 (n=2)"  # sampled: seeds 0 and 1 (4.0 and 6.0)


def test_train_time_averages_the_runs_that_recorded_one(tmp_path):
    from ramlab.report.runs import Run
    from ramlab.report.sections.errors import train_time_cell

    def run(**result) -> Run:
        return Run(
            tmp_path, "r", {"model": "fc", "data": "mnist"}, {"test_error": 1.0, **result}, [], None, None
        )

    assert train_time_cell([run(train_seconds=90.0), run()]) == "90 s (n=1)"  # not (90 + 0) / 2
    assert train_time_cell([run(train_seconds=90.0), run(train_seconds=30.0)]) == "60 s"
    assert train_time_cell([run()]) == "—"


def test_markdown_cells_and_links_survive_what_files_hold(tmp_path):
    from ramlab.report.doc import _inline, _md_cell, link_target

    # A damaged YAML file's reason quotes "<stream end>": a renderer would drop it as a tag.
    assert (
        _md_cell('not valid YAML (expected "<stream end>")')
        == 'not valid YAML (expected "&lt;stream end&gt;")'
    )
    assert _md_cell("`a<b` | c & d") == "`a<b` \\| c &amp; d"  # code spans keep their text
    # A run folder with a space: a bare link target would end at it.
    target = link_target("runs/ram sp (0)/config.yaml")
    assert target == "runs/ram%20sp%20%280%29/config.yaml" and link_target("runs/a/b.png") == "runs/a/b.png"
    assert _md_cell(f"[config.yaml]({target})") == f"[config.yaml]({target})"  # nothing to escape
    assert _inline(f"[config.yaml]({target})") == f'<a href="{target}">config.yaml</a>'


def test_a_presets_description_is_shown_as_written(tmp_path):
    from ramlab.report.doc import Doc

    doc = Doc(tmp_path)
    # The paper preset's: two stars made `infogain@0, sparse+bbox, 0.1` italic, stars gone.
    doc.plain("sparse+0.1*infogain@0, sparse+bbox, 0.1*infogain@0 <b> a_b")
    doc.details("run <1>", "x: 1")  # a run folder's name, inside an HTML tag in both
    assert doc.markdown().startswith(
        "sparse+0.1\\*infogain@0, sparse+bbox, 0.1\\*infogain@0 \\<b\\> a\\_b\n\n<details><summary>run &lt;1&gt;</summary>"
    )
    body = doc.html("t")
    assert "<p>sparse+0.1*infogain@0, sparse+bbox, 0.1*infogain@0 &lt;b&gt; a_b</p>" in body
    assert "<summary>run &lt;1&gt;</summary>" in body


def test_cost_rows_measured_at_several_commits_say_so(tmp_path):
    # A cost job resumed (or given a new size) at a later commit measures only the rows it
    # lacks: the report named the last job's commit for every row.
    good = {"params": 10, "flops": 20, "latency_ms": 1.0, "throughput": 5.0, "peak_memory_mb": 0.5}
    rows = [
        {"model": "ram", "size": 28, **good, "commit": "aaa"},
        {"model": "ram", "size": 60, **good, "commit": "aaa"},
        {"model": "ram", "size": 100, **good, "commit": "bbb"},
    ]
    (tmp_path / "cost.json").write_text(json.dumps({"rows": rows}))
    job = {"kind": "cost", "command": "ramlab study quick", "commit": "bbb"}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    expected = (
        "by cost jobs (`ramlab study quick` the last) over several commits: rows 2 at `aaa`, 1 at `bbb`"
    )
    assert f"Measured {expected}." in report  # the cost section
    assert f"`cost.json`: measured {expected}; " in report  # provenance
    # One commit over every row names it, whatever commit the last cost job (which then
    # measured nothing) ran at.
    rows[2]["commit"] = "aaa"
    (tmp_path / "cost.json").write_text(json.dumps({"rows": rows}))
    write_report(tmp_path)
    assert "Measured by `ramlab study quick` at commit `aaa`." in (tmp_path / "report.md").read_text()


def test_the_cost_section_says_the_rams_scales_and_how_many_calls_each_median_took(tmp_path):
    good = {"params": 10, "flops": 20, "latency_ms": 1.0, "throughput": 5.0, "peak_memory_mb": 0.5}
    rows = [
        {"model": "ram", "size": 60, **good, "config": {"scales": 3}, "repeats": 10, "weights_mb": 0.25},
        {"model": "ram", "size": 28, **good, "config": {"scales": 2}, "repeats": 10},
        {"model": "resnet", "size": 28, **good, "config": {}},  # written before rows said: 3
    ]
    (tmp_path / "cost.json").write_text(json.dumps({"rows": rows}))
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "(the RAM adds scales for larger images: 2 at 28 px, 3 at 60 px)" in report
    assert "(the median of 3 or 10 timed calls after warm-up)" in report
    assert "a multiply-add is 2 FLOPs" in report and "the weights' MiB of it in brackets" in report
    assert "| 0.5 (0.25) |" in report and "| 0.5 |" in report  # rows before weights_mb: the peak alone


def test_a_studys_report_takes_the_runs_of_its_plan(tmp_path):
    # --seeds 3 then a plain rerun (2 seeds): seed 2 stays on disk, and was averaged in.
    from ramlab.report.runs import read_runs

    for seed, error in enumerate((2.0, 3.0, 9.0)):
        write_run(tmp_path, f"fc-mnist-seed{seed}", model="fc", data="mnist", seed=seed, error=error)
    assert len(read_runs(tmp_path)[0]) == 3  # no plan: every run (a folder of runs, not a study)
    (tmp_path / "plan.json").write_text(json.dumps({"runs": ["runs/fc-mnist-seed0", "runs/fc-mnist-seed1"]}))
    runs, skipped = read_runs(tmp_path)
    assert [r.name for r in runs] == ["runs/fc-mnist-seed0", "runs/fc-mnist-seed1"]
    assert [(s.name, s.reason.split(" (")[0]) for s in skipped] == [
        ("runs/fc-mnist-seed2", "not a run of this study's plan")
    ]
    (tmp_path / "plan.json").write_text("{damaged")  # unreadable: every run, as before plans
    assert len(read_runs(tmp_path)[0]) == 3


def test_the_glimpses_section_shows_the_first_seed_that_drew_them(tmp_path):
    for seed in (0, 1):
        write_run(
            tmp_path,
            f"ram-sparse-translated60-seed{seed}",
            model="ram",
            data="translated60",
            seed=seed,
            error=3.0,
            steps=[9.0, 3.0],
            glimpses=seed == 1,
        )
    assert main(["report", str(tmp_path)]) == 0
    section = (tmp_path / "report.md").read_text().split("## Glimpse trajectories")[1]
    assert "### `ram` on translated60" in section  # the label in code: a reward's * is no emphasis
    assert (
        "ram-sparse-translated60-seed1/glimpses.png" in section
        and "No run has glimpse figures" not in section
    )


def test_the_papers_baseline_numbers_only_beside_a_baseline_of_its_shape():
    # an FC net of 64 units was shown beside the paper's 256-unit figure
    from types import SimpleNamespace

    from ramlab.report.paper import paper_error

    def run(model, **config):
        return SimpleNamespace(model=model, data="translated60", config={"model_config": config})

    assert paper_error(run("fc", hidden=256, layers=2)) == 2.63
    assert paper_error(run("fc", hidden=64, layers=2)) is None
    assert paper_error(run("convnet", filters=8, kernel=10, stride=5, hidden=256)) == 1.62
    assert paper_error(run("convnet", filters=16, kernel=10, stride=5, hidden=256)) is None
    assert paper_error(run("ram", glimpses=6)) == 1.22
    # Its random glimpses: their own row, only where the paper gives one (the cluttered sets).
    assert paper_error(run("ram", glimpses=8, policy="random")) is None
    cluttered = SimpleNamespace(model="ram", data="cluttered60", config={"model_config": {"glimpses": 8}})
    assert paper_error(cluttered) == 4.04
    cluttered.config["model_config"]["policy"] = "random"
    assert paper_error(cluttered) == 14.4


def test_the_flops_column_counts_every_rollout_the_test_error_averaged(tmp_path):
    # eval.json counts one rollout with the policy mean; a test error averaged over M sampled
    # rollouts cost M times that.
    glimpses = to_dict(RAMConfig(glimpses=2))
    write_run(
        tmp_path,
        "ram-seed0",
        model="ram",
        data="mnist",
        seed=0,
        error=2.0,
        model_config=glimpses,
        steps=[3.0, 2.0],
    )
    folder = write_run(tmp_path, "fc-seed0", model="fc", data="mnist", seed=0, error=3.0)
    for name, rollouts in (("ram-seed0", 4), ("fc-seed0", 4)):
        config_file = tmp_path / "runs" / name / "config.yaml"
        config = yaml.safe_load(config_file.read_text())
        config["train"]["eval_rollouts"] = rollouts
        config_file.write_text(yaml.safe_dump(config))
    assert folder.is_dir() and main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model | test error"))
    column = [c.strip() for c in header.strip("|").split("|")].index("FLOPs / image")
    assert table_row(report, "`ram`")[column] == "12 M"  # 3 M a rollout, 4 rollouts
    assert table_row(report, "`fc`")[column] == "3 M"  # one pass, whatever the setting says


def test_a_run_from_before_a_field_existed_shares_its_label_with_a_newer_one(tmp_path):
    # `policy` joined RAMConfig later: an older run's config lacks it, a newer one says
    # `learned`. They are one experiment (the default is the old behaviour), not two labels.
    from ramlab.report import find_runs

    new = to_dict(RAMConfig(glimpses=6))
    old = {k: v for k, v in new.items() if k != "policy"}
    write_run(tmp_path, "ram-seed0", model="ram", data="mnist", seed=0, error=2.0, model_config=old)
    write_run(tmp_path, "ram-seed1", model="ram", data="mnist", seed=1, error=3.0, model_config=new)
    write_run(tmp_path, "ram-random-seed0", model="ram", data="mnist", seed=0, error=9.0,
              model_config={**new, "policy": "random"})  # fmt: skip
    labels = {run.path.name: run.label for run in find_runs(tmp_path)}
    assert labels["ram-seed0"] == labels["ram-seed1"] == "ram (policy=learned)"
    assert labels["ram-random-seed0"] == "ram (policy=random)"


def test_a_training_range_is_never_marked_as_one_level():
    from ramlab.sweeps import training_level

    assert training_level({"trained": [0.8, 1.2]}) == (0.8, 1.2)  # augmentation: a range, said in words
    assert training_level({"trained": [30, 30]}) == 30.0 and training_level({"trained": 4}) == 4.0
    assert training_level({}) is None and training_level({"trained": [1.0]}) is None
