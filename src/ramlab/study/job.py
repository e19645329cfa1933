"""One job of a study in its own process, for executors that run jobs side by side:

    python -m ramlab.study.job STUDY_DIR JOB_ID

It reads STUDY_DIR/study.yaml (the preset, as the study saved it), rebuilds the plan
(`ramlab.study.plan`), and runs job JOB_ID unless it is done (a training resumes from its
last.pt), then appends its line to STUDY_DIR/jobs.jsonl. The jobs it needs must be done.
It does what the serial runner does for the job (`ramlab.study.jobs.run_job`).

Exit status: 0 done (or found done); 1 a RamlabError, its message on stderr (an unknown job,
a job whose deps are not done, a loss that became NaN, ...); 130 interrupted (Ctrl-C).

Environment:
    RAMLAB_THREADS=N         the job's torch threads (overrides the preset's `threads`)
    RAMLAB_STUDY_COMMAND=... the user's study command, recorded with the job's results
    RAMLAB_TEST_CRASH_JOB=ID and RAMLAB_TEST_CRASH_MARK=FILE, for tests only: if job ID is a
                             training and FILE does not exist, create FILE and exit with
                             status 3 just after the first epoch's last.pt is written (a
                             crash, which a rerun resumes from)
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from ramlab.errors import RamlabError
from ramlab.study.context import Context, log_to_stderr
from ramlab.study.jobs import is_done, run_job
from ramlab.study.plan import Job, build_plan
from ramlab.study.preset import load_preset

CRASH_JOB, CRASH_MARK = "RAMLAB_TEST_CRASH_JOB", "RAMLAB_TEST_CRASH_MARK"
STUDY_COMMAND = "RAMLAB_STUDY_COMMAND"


def run_one(out: str | Path, job_id: str, *, log: Callable[[str], None] = log_to_stderr) -> bool:
    """Run job `job_id` of the study in `out` unless it is done; returns whether it ran."""
    from ramlab.provenance import run_commit

    out = Path(out)
    if not (out / "study.yaml").is_file():
        raise RamlabError(
            f"{out}: no study.yaml, so no study to take job {job_id!r} from; a study writes it when "
            "it starts (ramlab study PRESET --out DIR)"
        )
    preset = load_preset(out / "study.yaml")
    # The command the user gave (the study's, passed by the executor), as a serial run records.
    command = os.environ.get(STUDY_COMMAND) or shlex.join(
        ["python", "-m", "ramlab.study.job", str(out), job_id]
    )
    ctx = Context(preset, out, log=log, command=command)
    jobs = {job.id: job for job in build_plan(preset)}
    if job_id not in jobs:
        close = difflib.get_close_matches(job_id, jobs, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise RamlabError(
            f"{out}: the study has no job {job_id!r}; {hint}Its {len(jobs)} jobs are named "
            "train-<run>, eval-<run>, robustness-<sweep>-<run> and cost (run: <group>-<data>-seed<S>)"
        )
    job = jobs[job_id]
    if is_done(ctx, job):
        log(f"[study] {job.id}: already done")
        return False
    waiting = [dep for dep in job.deps if not is_done(ctx, jobs[dep])]
    if waiting:
        raise RamlabError(f"job {job.id} needs {', '.join(waiting)} done first")
    ctx.commit = run_commit()  # the code this process loaded
    log(f"[study] job {job.id}: {job.title}")
    seconds = run_job(ctx, job, trainer_class=_crash_for_tests(job))
    log(f"[study] done: {job.title} in {seconds:.0f} s")
    return True


def _crash_for_tests(job: Job) -> type | None:
    """Tests only (see the module): a Trainer that exits with status 3 after its first
    epoch's checkpoint, or None (the usual Trainer)."""
    mark = os.environ.get(CRASH_MARK)
    if job.kind != "train" or os.environ.get(CRASH_JOB) != job.id or not mark or Path(mark).exists():
        return None
    from ramlab.trainer import Trainer

    class CrashAfterFirstEpoch(Trainer):
        def _end_epoch(self) -> None:
            super()._end_epoch()  # validates, then writes last.pt
            Path(mark).touch()
            raise SystemExit(3)

    return CrashAfterFirstEpoch


def main(argv: list[str] | None = None) -> int:
    from ramlab.device import reuse_freed_memory
    from ramlab.files import os_error_message

    parser = argparse.ArgumentParser(
        prog="python -m ramlab.study.job",
        description="Run one job of a study (unless it is done) and record it in the study's jobs.jsonl.",
    )
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder (holding study.yaml)")
    parser.add_argument("job_id", metavar="JOB_ID", help="e.g. train-ram-translated60-seed0, cost")
    args = parser.parse_args(argv)
    reuse_freed_memory()
    try:
        run_one(args.study_dir, args.job_id)
        return 0
    except RamlabError as exc:
        print(f"ramlab: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment: a full disk, a read-only folder, ...
        print(f"ramlab: error: {os_error_message(exc, verb='use')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # ramlab's own say what was kept
        print(f"ramlab: {str(exc) or 'interrupted; rerun the same command to resume'}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
