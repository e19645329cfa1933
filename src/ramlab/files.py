"""Atomic file writes: a temp file in the same folder, then a rename, so no reader sees half a file.

A write that fails (a full disk, a read-only folder) leaves the previous file as it was,
removes its temp file and raises RamlabError naming the file and the fix.
"""

import errno
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ramlab.errors import RamlabError

TEMP_SUFFIX = ".tmp"


def os_error_advice(exc: OSError, *, place: str = "--out") -> str:
    """What to do about a failed read or write, by its cause; `place`: the setting that
    chooses where it writes (a run's --out, the cache's RAMLAB_HOME)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full: free space on it (or choose another {place}), then rerun (with --resume to continue a run)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write there: choose a writable {place} (or fix its permissions)"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"a file stands where a folder is needed: choose another {place} (or move the file)"
    return "check the disk and the path, then rerun (with --resume to continue a run)"


def os_error_message(
    exc: OSError,
    path: str | os.PathLike | None = None,
    *,
    verb: str = "write",
    place: str = "--out",
) -> str:
    where = path or exc.filename or "a file"
    return f"cannot {verb} {where}: {exc.strerror or exc}; {os_error_advice(exc, place=place)}"


def _new_file_mode() -> int:
    """The mode `open` gives a new file: 0666 less the process's umask, read where Linux
    shows it (setting it to read it back, as elsewhere, races with another thread's files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        with _UMASK_LOCK:
            umask = os.umask(0)
            os.umask(umask)
    return 0o666 & ~umask


_UMASK_LOCK = threading.Lock()


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it reaches the disk before what follows (after a
    power loss, renames done in order stay in order). A no-op where folders cannot be opened
    (Windows) or synced (some network file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Any], None],
    *,
    mode: str = "wb",
    place: str = "--out",
) -> Path:
    """Call `write(fileobj)` on a temp file beside `path`, fsync it, and rename it onto `path`
    (`place`: the setting that chooses where, named when it fails)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise RamlabError(os_error_message(exc, path, place=place)) from None
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp's 0600 would hide results from the group
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        message = os_error_message(exc, path, place=place)
        raise RamlabError(f"{message} ({path} was left as it was)") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temp(directory: str | os.PathLike, *, older_than: float = 0.0) -> list[Path]:
    """Delete the temp files that atomic writes in `directory` left behind when their process
    was killed mid-write: all of them while holding the directory's lock, or (a folder no lock
    guards, the scene cache) those untouched for `older_than` seconds, which a running write
    never is (a writer suspended that long loses its write and is told so)."""
    now = time.time()
    stale = []
    for p in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        try:
            if p.is_file() and (older_than <= 0 or now - p.stat().st_mtime >= older_than):
                p.unlink(missing_ok=True)
                stale.append(p)
        except OSError:  # gone meanwhile, or not ours to delete: not this write's business
            continue
    return stale


def check_json_target(path: str | os.PathLike, *, keys: tuple[str, ...], what: str) -> None:
    """Before a command's `--json FILE`: an existing FILE must be a JSON object with `keys`,
    an earlier output of the same command, not a run's result.json, config.yaml or another
    file it would overwrite; a RamlabError that says so otherwise."""
    target = Path(path)
    if not target.exists():
        return
    if target.is_dir():
        raise RamlabError(f"--json {target} is a folder: give a file path (such as {target / 'out.json'})")
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    # a run's own files (its config, result, logs, checkpoints, figures): never "delete it"
    own = target.suffix in (".pt", ".yaml", ".jsonl", ".png", ".gif") or target.name.startswith("result.")
    if data is None and not own:  # cut short or garbled, not a run's own file: a damaged output?
        raise RamlabError(
            f"--json {target}: that file is not readable JSON (damaged?), and this would overwrite "
            f"it: if it is {what}, damaged, delete it and run again; otherwise choose another --json"
        )
    if not (isinstance(data, dict) and all(key in data for key in keys)):
        raise RamlabError(
            f"--json {target}: that file holds something other than {what} (a run's result.json "
            "or config.yaml?), which it would overwrite; choose another --json"
        )


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda f: f.write(text), mode="w")
