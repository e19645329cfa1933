"""Which code produced a result: the git commit of ramlab's checkout, recorded in every
result.json, study record and report."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(where: Path = Path(__file__).parent) -> str | None:
    """The commit of the git checkout holding `where` (ramlab's source by default), with
    "-dirty" when tracked files differ from it; None outside a checkout."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=where)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")
