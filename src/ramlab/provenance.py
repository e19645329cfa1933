"""Which code produced a result: the git commit of ramlab's checkout, recorded in every
result.json, study record and report."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(where: Path = Path(__file__).parent) -> str | None:
    """The commit of the git checkout holding `where` (ramlab's source by default), with
    "-dirty" when tracked files differ from it or `where` holds untracked files; None outside
    a checkout, or where git ignores `where` (a copy installed into an ignored folder)."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=where)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return None
        if git("check-ignore", "-q", ".").returncode == 0:
            return None  # a copy installed inside the checkout (an ignored .venv): not its code
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        # a new module imported but never added changes the code as much as an edit does
        dirty += git("status", "--porcelain", "--untracked-files=all", "--", ".").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def command_line() -> str:
    """What produced a printed measurement, for its first line: the command (`python` and
    this process's arguments) and the commit (git, else $RAMLAB_COMMIT, as on a machine given
    a copy of the checkout without .git)."""
    import os
    import shlex
    import sys

    commit = git_commit() or os.environ.get("RAMLAB_COMMIT") or "unknown"
    return f"command: {shlex.join(['python', *sys.argv])}; commit: {commit}"
