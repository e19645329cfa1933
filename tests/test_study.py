"""The study runner: the tiny preset end to end, skipping finished jobs, resuming an
interrupted one, the packaged presets, and clear errors for a wrong preset."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
import tiny
import yaml

from ramlab import robustness, study
from ramlab.cli import main
from ramlab.errors import RamlabError
from ramlab.run_dir import read_result
from ramlab.study import Study, load_preset

TINY_RAM = {**tiny.TINY_RAM, "glimpses": 2}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 8,
    "train_limit": 16,
    "eval_limit": 8,
    "threads": 1,
    "progress": False,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def restore_state():
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


def ram_runs(*names: str) -> list[dict]:
    """Run groups of the tiny RAM on translated60, one per name."""
    return [
        {"name": name, "model": "ram", "data": "translated60", "model_config": TINY_RAM} for name in names
    ]


def write_preset(path: Path, **sections) -> Path:
    preset = {
        "seeds": 1,
        "train": TINY_TRAIN,
        "runs": [{"name": "ram", "model": "ram", "data": "translated60", "model_config": TINY_RAM}],
        **sections,
    }
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# ---- the tiny preset, end to end ------------------------------------------------------------
def test_tiny_study_end_to_end_then_nothing_is_redone(fake_mnist, tmp_path, capsys, monkeypatch):
    commits = (f"commit{i}" for i in itertools.count())  # the tree moves on at every look
    monkeypatch.setattr("ramlab.provenance.git_commit", lambda *args: next(commits))
    out = tmp_path / "study"
    assert main(["study", "tiny", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[study] tiny: 16 jobs, 0 already done, 16 to run" in err
    assert re.search(r"job 1/16: train ram-sparse-translated60-seed0 \(15 more after it; time left ~\d+", err)
    assert "ram-best on translated60: best reward is" in err

    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert json.loads((out / "plan.json").read_text())["runs"] == [f"runs/{name}" for name in runs]
    assert runs == [
        "ram-best-translated60-seed0",
        "ram-infogain-translated60-seed0",
        "ram-sparse-translated60-seed0",
        "ram-sparse-translated60-seed1",
        "resnet-translated60-seed0",
    ]
    for name in runs:
        run = out / "runs" / name
        assert {"config.yaml", "metrics.jsonl", "result.json", "eval.json", "robustness.json"} <= {
            p.name for p in run.iterdir()
        }
        sweep = json.loads((run / "robustness.json").read_text())
        assert list(sweep["shifts"]) == ["translate", "rotate", "noise"]
    for name in runs[:4]:  # the RAM runs draw their glimpses, and say how their places were read
        where = json.loads((out / "runs" / name / "eval.json").read_text())["where"]
        assert (where["split"], where["protocol"]) == ("test", "policy mean, one rollout")
        assert (out / "runs" / name / "glimpses.png").is_file()
        assert (out / "runs" / name / "glimpses.gif").is_file()
    assert not (out / "runs" / "resnet-translated60-seed0" / "glimpses.png").exists()

    # The best-reward group took the reward of the group with the lower validation error.
    def val(group: str) -> float:
        results = [json.loads(p.read_text()) for p in (out / "runs").glob(f"{group}-*/result.json")]
        return sum(r["val_error"] for r in results) / len(results)

    best = yaml.safe_load((out / "runs" / "ram-best-translated60-seed0" / "config.yaml").read_text())
    expected = "sparse" if val("ram-sparse") <= val("ram-infogain") else "sparse+infogain"
    assert best["model_config"]["reward"] == expected
    assert best["model_config"]["glimpses"] == 2

    cost = json.loads((out / "cost.json").read_text())["rows"]
    assert {(r["model"], r["size"]) for r in cost} == {
        ("ram", 28),
        ("ram", 60),
        ("resnet", 28),
        ("resnet", 60),
    }
    assert {r["commit"] for r in cost} == {"commit0"}  # each row names the code that measured it
    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == 16 and all(j["command"].startswith("ramlab") for j in jobs)
    assert all(j["units"] > 0 for j in jobs)  # the work each did, for the estimates
    assert {j["commit"] for j in jobs} == {"commit0"}  # the code the study started with
    for name in runs:  # and every file a job wrote names it, not the tree's HEAD at the job
        run = out / "runs" / name
        for file in ("result.json", "eval.json", "robustness.json"):
            assert json.loads((run / file).read_text())["commit"] == "commit0", (name, file)

    # The report: every section, and the numbers of the runs.
    report = (out / "report.md").read_text()
    for heading in (
        "## Test error per dataset and model",
        "## Compute cost",
        "## Robustness to shifts not seen in training",
        "## Reward structures",
        "## Glimpse trajectories",
        "## Provenance",
    ):
        assert heading in report
    sparse = [
        json.loads((out / "runs" / f"ram-sparse-translated60-seed{s}" / "result.json").read_text())
        for s in (0, 1)
    ]
    errors = [r["test_error"] for r in sparse]
    mean = sum(errors) / 2
    std = abs(errors[0] - errors[1]) / 2**0.5
    assert f"{mean:.2f} ± {std:.2f}" in report
    resnet = json.loads((out / "runs" / "resnet-translated60-seed0" / "result.json").read_text())
    assert re.search(rf"\| `resnet` \| {resnet['test_error']:.2f} \|", report)
    html = (out / "report.html").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    # anytime, training, cost, error against FLOPs, robustness, rewards; PNG + GIF per RAM label (3)
    assert len(figures) == 6 + 3 * 2
    assert html.count("<img ") == len(figures)
    assert html.count('src="data:image/') == len(figures)

    # Again: every job is found done, and no run file is touched.
    before = mtimes(out / "runs")
    assert main(["study", "tiny", "--out", str(out)]) == 0
    assert "16 jobs, 16 already done, 0 to run" in capsys.readouterr().err
    assert mtimes(out / "runs") == before

    # --list: every job done, with the seconds jobs.jsonl recorded for it.
    assert main(["study", "tiny", "--out", str(out), "--list"]) == 0
    *rows, total = capsys.readouterr().out.splitlines()
    took = {j["job"]: j["seconds"] for j in jobs}
    assert len(rows) == 16 and total.startswith("16 jobs: 16 done, 0 to do, ~0 s of job time")
    for row in rows:
        state, seconds, title = re.fullmatch(r"\s*\d+  (done|to do)\s+(\d+) s  (.+)", row).groups()
        assert state == "done" and int(seconds) == round(took[title]), row


# ---- resuming ------------------------------------------------------------------------------
def test_interrupted_training_resumes_and_finished_jobs_are_kept(fake_mnist, tmp_path, monkeypatch):
    preset = write_preset(
        tmp_path / "mine.yaml",
        runs=ram_runs("a", "b"),
        robustness=[{"runs": "all", "shifts": {"rotate": [0, 30]}, "limit": 8}],
    )
    out = tmp_path / "study"
    import ramlab.trainer as trainer

    real_evaluate, calls = trainer.evaluate, []

    def stop_in_second_epoch_of_b(model, loader, **kwargs):
        calls.append(1)
        # validation a1, a2, test a, validation b1, then stop before b's second validation
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_evaluate(model, loader, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", stop_in_second_epoch_of_b)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        study.run_study(preset, out=out, log=logs.append)
    run_b = out / "runs" / "b-translated60-seed0"
    assert (out / "runs" / "a-translated60-seed0" / "result.json").is_file()
    assert (run_b / "last.pt").is_file() and not (run_b / "result.json").exists()
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)

    finished = mtimes(out / "runs" / "a-translated60-seed0")
    logs.clear()
    study.run_study(preset, out=out, log=logs.append)
    assert logs[0].startswith("[study] mine: 4 jobs, 1 already done, 3 to run")
    assert mtimes(out / "runs" / "a-translated60-seed0").keys() >= finished.keys()
    assert all(
        mtimes(out / "runs" / "a-translated60-seed0")[k] == v for k, v in finished.items()
    )  # a's training files untouched
    result = json.loads((run_b / "result.json").read_text())
    assert result["epochs"] == 2
    val_epochs = [
        json.loads(line)["epoch"]
        for line in (run_b / "metrics.jsonl").read_text().splitlines()
        if "val/error" in line
    ]
    assert val_epochs == [1, 2]  # epoch 1 kept from before the interruption, epoch 2 done after


def test_a_changed_preset_does_not_silently_reuse_a_finished_run(fake_mnist, tmp_path):
    out = tmp_path / "study"
    study.run_study(write_preset(tmp_path / "p.yaml"), out=out, log=lambda _: None)
    changed = write_preset(tmp_path / "p.yaml", train={**TINY_TRAIN, "epochs": 3})
    loaded = load_preset(changed)
    run = Study(loaded, out, log=lambda _: None)
    refused = r"holds a run with another config .*train\.epochs: 2 -> 3"
    with pytest.raises(RamlabError, match=refused):  # finished: not counted as done ...
        run.run(report=False)
    job = run.jobs()[0]
    (out / "runs" / job.run / "result.json").unlink()  # ... nor continued when unfinished
    with pytest.raises(RamlabError, match=refused):
        run.run(report=False)


def test_how_a_finished_run_ran_may_change_and_one_refused_run_stops_no_other(fake_mnist, tmp_path, capsys):
    out = tmp_path / "study"
    study.run_study(write_preset(tmp_path / "p.yaml", runs=ram_runs("a")), out=out, log=lambda _: None)
    finished = mtimes(out / "runs" / "a-translated60-seed0")
    # Progress, logging and the device say how a run ran, not what it computes: still done.
    how = {**TINY_TRAIN, "progress": True, "log_every": 7, "eval_batch_size": 3, "device": "auto"}
    logs: list[str] = []
    study.run_study(
        write_preset(tmp_path / "p.yaml", train=how, runs=ram_runs("a")), out=out, log=logs.append
    )
    assert logs[0].startswith("[study] p: 1 jobs, 1 already done, 0 to run"), logs[0]
    assert mtimes(out / "runs" / "a-translated60-seed0") == finished
    # A changed epochs refuses a's run, in its own job: b trains all the same, --list still lists.
    changed = write_preset(tmp_path / "p.yaml", train={**TINY_TRAIN, "epochs": 3}, runs=ram_runs("a", "b"))
    logs.clear()
    with pytest.raises(
        RamlabError, match=r"^1 job\(s\) of the study failed;.*\n  train a-translated60-seed0: "
    ):
        study.run_study(changed, out=out, log=logs.append)
    assert read_result(out / "runs" / "b-translated60-seed0" / "result.json")["epochs"] == 3
    assert mtimes(out / "runs" / "a-translated60-seed0") == finished  # a's run kept as it was
    capsys.readouterr()
    assert main(["study", str(changed), "--out", str(out), "--list"]) == 0
    # --list says a's training is refused, and why, where it said "to do" before.
    lines = capsys.readouterr().out.splitlines()
    (i,) = [i for i, line in enumerate(lines) if "train a-translated60-seed0" in line]
    assert lines[i].split()[1] == "refused"
    assert re.search(r"holds a run with another config .*train\.epochs: 2 -> 3", lines[i + 1])
    assert lines[-1].startswith("2 jobs: 1 done, 0 to do, 1 refused, 0 blocked by them (each says why), ~")
    (b,) = [line for line in lines if "train b-translated60-seed0" in line]
    assert b.split()[1] == "done"
    # With evaluation: a's evaluation would be skipped, and says so; b's is to do.
    evaluated = write_preset(
        tmp_path / "p.yaml", train={**TINY_TRAIN, "epochs": 3}, runs=ram_runs("a", "b"), evaluate={"limit": 4}
    )
    assert main(["study", str(evaluated), "--out", str(out), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (i,) = [i for i, line in enumerate(lines) if "eval a-translated60-seed0" in line]
    assert lines[i].split()[1] == "blocked" and "~" not in lines[i]
    assert lines[i + 1].strip() == "skipped: it needs train a-translated60-seed0, which cannot run"
    (b,) = [line for line in lines if "eval b-translated60-seed0" in line]
    assert b.split()[1] == "to"
    assert re.match(r"4 jobs: 1 done, 1 to do, 1 refused, 1 blocked by them \(each says why\), ~", lines[-1])


# ---- presets --------------------------------------------------------------------------------
def test_list_shows_jobs_without_running(fake_mnist, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ramlab.execute.resources.available_cpus", lambda: 2)
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--list"]) == 0
    *rows, total = capsys.readouterr().out.splitlines()
    assert len(rows) == 16 and all(re.search(r"to do +~\d+ (s|min)  ", row) for row in rows)
    assert re.match(r"16 jobs: 0 done, 16 to do, ~\d+ (s|min) of job time", total)
    assert not (tmp_path / "s").exists()
    # A listed command is one that would run: its executor settings are checked too.
    for extra, says in (
        (["--executor", "local", "--jobs", "0"], "--jobs must be an integer >= 1"),
        (["--executor", "local", "--option", "foo=1"], "unknown option(s) foo for --executor local"),
        (
            ["--executor", "local", "--option", "timeout_min=-5"],
            "timeout_min must be a number of minutes >= 0",
        ),
        (
            ["--executor", "local", "--option", "grace_seconds=abc"],
            "--option grace_seconds='abc': a number >= 0",
        ),
        (["--executor", "ray", "--option", "retries=1.5"], "--option retries=1.5: a whole number >= 0"),
        (["--jobs", "2"], "--jobs and --gpus-per-job need a parallel --executor"),
        (["--option", "timeout_min=5"], "the serial study runs its jobs in this process"),
        # more threads than CPUs: refused when listed as when run
        (["--executor", "local", "--jobs", "2", "--threads-per-job", "2"], "would oversubscribe the cores"),
        (["--threads-per-job", "3"], "would oversubscribe the cores"),
    ):
        assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--list", *extra]) == 2
        assert says in capsys.readouterr().err


@pytest.mark.parametrize(("args", "threads"), [([], None), (["--threads-per-job", "2"], 2)])
def test_the_serial_study_takes_its_threads_per_job(tmp_path, monkeypatch, args, threads):
    seen = []
    monkeypatch.setattr(Study, "run", lambda self, **_: seen.append(self.threads) or tmp_path / "r.md")
    monkeypatch.setattr("ramlab.execute.resources.available_cpus", lambda: 2)
    monkeypatch.delenv("RAMLAB_THREADS", raising=False)
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), *args]) == 0
    assert seen == [threads]  # None: the preset's threads
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--threads-per-job", "0"]) == 2
    # More threads than CPUs is refused by the run as by its --list, not quietly capped.
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--threads-per-job", "3"]) == 2
    assert seen == [threads]


def test_the_serial_study_refuses_executor_options(tmp_path, capsys):
    # It runs its jobs in this process: a time limit (or a typo) would be silently ignored.
    out = tmp_path / "s"
    assert main(["study", "tiny", "--out", str(out), "--option", "timeout_min=60"]) == 2
    err = capsys.readouterr().err
    assert "--option timeout_min: the serial study runs its jobs in this process" in err
    assert "--executor local --jobs 1 --option timeout_min=N" in err
    assert not out.exists()


def test_a_damaged_job_output_reads_as_not_done(tmp_path):
    from ramlab.study.jobs import _read_json

    path = tmp_path / "eval.json"
    for damaged in (b"[]", b"null", b'"text"', b"\xff\xfe", b'{"settings": '):
        path.write_bytes(damaged)
        assert _read_json(path) == {}, damaged  # was an AttributeError (or UnicodeDecodeError)
    path.write_text('{"settings": 1}')
    assert _read_json(path) == {"settings": 1}
    assert _read_json(tmp_path / "missing.json") == {}
