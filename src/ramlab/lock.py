"""One writer per directory: an advisory lock on DIR/.lock, held while a process writes there.

The lock is `fcntl.flock` on an open file, so the operating system releases it when the
process ends in any way (exit, Ctrl-C, kill -9): a killed run never leaves a stale lock.
The file holds who locked it (pid, host, command, since when) for the message a second
process gets. flock works on local disks and on NFSv4; a study shared between nodes (Ray,
Slurm) must live on storage whose locks every node sees. Where fcntl does not exist
(Windows), directories are not locked.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from ramlab.errors import RamlabError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class DirectoryLock:
    """`with DirectoryLock(path, command):` creates `path` if needed and holds its lock, or
    raises RamlabError naming the process that holds it and what to do."""

    def __init__(
        self,
        path: str | Path,
        command: str,
        *,
        what: str = "run",
        advice: str = "choose another --out",
        resume: str = "add --resume to continue it",
    ) -> None:
        self.path = Path(path)
        self.command = command
        self.what = what
        self.advice = advice
        self.resume = resume
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # not held: locks unsupported
                os.close(fd)
                raise RamlabError(
                    f"{self.path}: cannot lock this {self.what} ({exc.strerror or exc}): its file system "
                    "does not support file locks (NFSv3 without lockd, Lustre without flock); put it "
                    "on one that does (a local disk, NFSv4)"
                ) from None
            holder = holder_of(fd)
            os.close(fd)
            raise RamlabError(
                f"{self.path}: another process is writing this {self.what} ({holder}). Wait for it to "
                f"finish (then {self.resume}) or stop it" + (f"; or {self.advice}" if self.advice else "")
            ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (removing it would race)
            self._fd = None


def holder_of(fd: int) -> str:
    """Who holds the lock, from the lock file's text (best effort: it may be mid-write)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"process {info['pid']} on {info['host']} since {since}: {info['command']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "a process that has not yet said who it is"


def append_line(path: Path, line: str) -> None:
    """Append `line` (and a newline) to `path` in one write, under an exclusive flock on the
    file: O_APPEND alone keeps lines whole on one machine, not between NFS clients (each
    computes the end of the file itself); the lock makes the client see the true end."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
