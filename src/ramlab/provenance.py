"""Which code produced a result: the git commit of ramlab's checkout, recorded in every
result.json, study record and report."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


def git_commit(where: Path = Path(__file__).parent) -> str | None:
    """The commit of the git checkout holding `where` (ramlab's source by default), with
    "-dirty" when tracked files differ from it or `where` holds untracked files; None outside
    a checkout, where git ignores `where` (a copy installed into an ignored folder), or where
    the checkout tracks nothing of it (a copy in some other repository)."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=where)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return None
        if git("check-ignore", "-q", ".").returncode == 0:
            return None  # a copy installed inside the checkout (an ignored .venv): not its code
        if not git("ls-files", "--", ".").stdout.strip():
            return None  # an untracked copy inside another repository (a dotfiles $HOME): not its code
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        # a new module imported but never added changes the code as much as an edit does
        dirty += git("status", "--porcelain", "--untracked-files=all", "--", ".").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def run_commit() -> str | None:
    """The commit of the code running: git's, else $RAMLAB_COMMIT (a machine given a copy of
    the checkout without .git, as a GPU lease's), else None."""
    return git_commit() or os.environ.get("RAMLAB_COMMIT") or None


def command() -> str:
    """This process's command, as a user would type it: `python` and its arguments."""
    return shlex.join(["python", *sys.argv])


def command_line() -> str:
    """What produced a printed measurement, for its first line: the command and the commit."""
    return f"command: {command()}; commit: {run_commit() or 'unknown'}"
