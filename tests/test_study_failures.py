"""A study's failures: a failed job stops none of the others, is listed at the end with its
log (a traceback for a bug), and a failing report does not hide them."""

from __future__ import annotations

import pytest
from test_study import ram_runs, write_preset

from ramlab import robustness, study
from ramlab.errors import RamlabError


@pytest.fixture(autouse=True)
def restore_state():
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


def test_a_failed_run_does_not_stop_the_others(fake_mnist, tmp_path, monkeypatch):
    preset = write_preset(
        tmp_path / "mine.yaml",
        runs=ram_runs("bad", "oom", "good"),
        evaluate={"glimpses": 0, "sampled": False},
    )
    import ramlab.trainer as trainer

    real_fit = trainer.Trainer.fit

    def fit(self, **kwargs):
        if self.out.name.startswith("bad-"):
            raise RamlabError("the loss became nan")
        if self.out.name.startswith("oom-"):  # not a RamlabError: a job's failure all the same
            raise RuntimeError("CUDA out of memory")
        return real_fit(self, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    logs: list[str] = []
    failed = (
        r"2 job\(s\) of the study failed.*\n  train bad-translated60-seed0: the loss.*"
        r"\n  train oom-translated60-seed0: RuntimeError: CUDA out of memory"
    )
    with pytest.raises(RamlabError, match=failed):
        study.run_study(preset, out=tmp_path / "s", log=logs.append)
    assert "[study] skipped: eval bad-translated60-seed0 (its training failed)" in logs
    assert "[study] skipped: eval oom-translated60-seed0 (its training failed)" in logs
    assert any("Traceback" in line and "RuntimeError: CUDA out of memory" in line for line in logs)
    assert (tmp_path / "s" / "runs" / "good-translated60-seed0" / "eval.json").is_file()
    assert "good-translated60-seed0" in (tmp_path / "s" / "report.md").read_text()


def test_a_report_that_fails_does_not_hide_the_jobs_failures(fake_mnist, tmp_path, monkeypatch):
    # a report bug (not a RamlabError) raised past the list of failed jobs
    preset = write_preset(
        tmp_path / "mine.yaml",
        runs=ram_runs("bad"),
        evaluate={"glimpses": 0, "sampled": False},
    )
    import ramlab.report as report
    import ramlab.trainer as trainer

    def fit(self, **kwargs):
        raise RamlabError("the loss became nan")

    def broken(out):
        raise ValueError("a bug in the report")

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    monkeypatch.setattr(report, "write_report", broken)
    logs: list[str] = []
    # one job failed, and the report (not counted as a job)
    failed = r"^1 job\(s\) of the study failed, and so did the report;.*\n  train bad-translated60-seed0: the loss.*"
    with pytest.raises(RamlabError, match=failed + r"\n  report: ValueError: a bug in the report"):
        study.run_study(preset, out=tmp_path / "s", log=logs.append)
    assert any("Traceback" in line and "ValueError: a bug in the report" in line for line in logs)
