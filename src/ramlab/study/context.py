"""What every job of a study needs besides itself: the preset, the study folder, a log, the
command and commit to record, and the thread count the environment asks for.

    RAMLAB_THREADS=N   torch threads of every job (overrides the preset's `threads`); set by
                       executors that run several jobs at once on one machine
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from ramlab.config import load_yaml
from ramlab.errors import RamlabError
from ramlab.run_dir import read_result
from ramlab.runconfig import RunConfig
from ramlab.study import recipes
from ramlab.study.plan import Job, group_seeds, run_dir, run_name
from ramlab.study.preset import Preset, RunGroup, run_config

THREADS_ENV = "RAMLAB_THREADS"


def log_to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def threads_from_env() -> int | None:
    """RAMLAB_THREADS as a whole number >= 1, or None when unset or empty."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise RamlabError(f"{THREADS_ENV} must be a whole number >= 1 (torch threads per job); got {text!r}")
    return int(text)


class Context:
    """A study's preset in its folder `out`: run directories and run configs of its jobs."""

    def __init__(
        self,
        preset: Preset,
        out: str | Path,
        *,
        log: Callable[[str], None] = log_to_stderr,
        command: str | None = None,
    ) -> None:
        self.out = Path(out)
        self.preset, self.recipes_changed = recipes.kept(preset, self.out)  # as the study started
        self.log = log
        self.command = command or shlex.join(["ramlab", *sys.argv[1:]])
        self.commit: str | None = None
        """The commit of the code running the jobs, recorded with each (set when they start)."""
        self.threads = threads_from_env()
        """Torch threads of every job (RAMLAB_THREADS), or None: the preset's."""
        self.jobs_here = True
        """Whether the jobs run on this machine (not on a Ray or Slurm node, whose CPUs and so
        whose threads this process cannot know): what is done is judged at their threads."""

    def run_by(self, executor: str, threads: int | None) -> None:
        """The jobs run under `executor` at `threads` each (None: the preset's or
        RAMLAB_THREADS): what is done is judged as they will run, by `--list` too."""
        if threads is not None:
            self.threads = threads
        self.jobs_here = executor in ("serial", "local")

    def group_seeds(self, group: RunGroup) -> int:
        return group_seeds(self.preset, group)

    def run_dir(self, run: str) -> Path:
        return run_dir(self.out, run)

    def job_threads(self) -> int:
        """Torch threads of a job (0: torch's default): RAMLAB_THREADS, else the preset's."""
        return self.threads or int(self.preset.train.get("threads", 0))

    def run_config(self, job: Job, *, chosen_reward: bool = True) -> RunConfig:
        """The training config of a job's run, as the preset defines it (`chosen_reward`
        False: a best_reward_of group's without the reward it chooses, which needs the
        compared groups' results)."""
        choose = chosen_reward and job.group.best_reward_of
        reward = self._chosen_reward(job.group, job.data) if choose else None
        return run_config(
            job.group,
            job.data,
            job.seed,
            self.preset.train,
            where=f"{self.preset.source}: {job.group.name} on {job.data}",
            reward=reward,
        )

    def _chosen_reward(self, group: RunGroup, data: str) -> str:
        """The reward a `best_reward_of` group trains on `data`: the one its runs there were
        given, once one has started (chosen once: compared runs that finish later, or another
        --seeds, must not split the group between rewards), else the best now."""
        for seed in range(self.group_seeds(group)):
            saved = self.run_dir(run_name(group, data, seed)) / "config.yaml"
            if saved.is_file():
                reward = RunConfig.from_dict(load_yaml(saved), where=str(saved)).model_config.reward
                return str(reward)
        return self._best_reward(group, data)

    def _best_reward(self, group: RunGroup, data: str) -> str:
        """The reward of the compared group with the lowest mean validation error on `data`."""
        scores = {}
        for name in group.best_reward_of:
            source = self.preset.group(name)
            errors = []
            for seed in range(self.group_seeds(source)):
                result = read_result(self.run_dir(run_name(source, data, seed)) / "result.json")
                if result is not None:
                    errors.append(result["val_error"])
            if not errors:
                raise RamlabError(
                    f"{group.name} takes the best reward of {', '.join(group.best_reward_of)}, "
                    f"but {name} has no finished run on {data} yet"
                )
            reward = run_config(
                source, data, 0, self.preset.train, where=self.preset.source
            ).model_config.reward
            scores[name] = (sum(errors) / len(errors), reward)
        best = min(scores, key=lambda name: scores[name][0])
        self.log(
            f"[study] {group.name} on {data}: best reward is {scores[best][1]!r} "
            f"(group {best}, mean validation error {scores[best][0]:.2f}%)"
        )
        return scores[best][1]
