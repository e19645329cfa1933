"""Cache files that check themselves: a damaged one is named, deleted and rebuilt, never trusted.

Arrays are cached as an `.npz` holding, beside them, the SHA-256 of their names, dtypes,
shapes and bytes; a read recomputes it, so a file that still loads but holds other content
(a flipped byte in the array data) is caught like one that does not load at all. Any failure
to read a cache file, whatever its exception type, becomes one line on stderr:

    ramlab: warning: damaged cache file PATH (REASON); deleted it, rebuilding it

and the caller rebuilds (scenes) or re-fetches (MNIST) it. Writes are atomic.
"""

from __future__ import annotations

import errno
import hashlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np

from ramlab.errors import RamlabError
from ramlab.files import atomic_write, remove_stale_temp

T = TypeVar("T")

DIGEST_KEY = "sha256"
"""The `.npz` entry holding the arrays' digest (a 64-character hex string)."""
MAX_REASON = 200
"""Characters of the underlying error kept in the one-line warning."""


class DamagedCache(ValueError):
    """A cache file that loads but whose content is not what was written."""


def array_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of each array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` and their digest to an `.npz`, atomically."""
    if DIGEST_KEY in arrays:
        raise ValueError(f"{DIGEST_KEY!r} is reserved for the digest")
    entries = {**arrays, DIGEST_KEY: np.array(array_digest(arrays))}
    if path.parent.is_dir():  # a killed job's half-written scenes (hundreds of MB) go with its next write
        remove_stale_temp(path.parent, older_than=STALE_TEMP_SECONDS)
    # The cache lives under RAMLAB_HOME, not a run's --out.
    return atomic_write(path, lambda f: np.savez(f, **entries), place="RAMLAB_HOME")


def load_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an `.npz` written by `save_arrays`, verified against its digest.

    Raises when the file cannot be read (any exception type) or its content differs.
    """
    with np.load(path, allow_pickle=False) as npz:
        if DIGEST_KEY not in npz.files:
            raise DamagedCache("no checksum: written by an older ramlab")
        stored = str(npz[DIGEST_KEY])
        arrays = {name: npz[name] for name in names}
    if array_digest(arrays) != stored:
        raise DamagedCache("checksum mismatch: content differs from what was written")
    return arrays


def _reason(error: Exception, path: Path) -> str:
    """The first line of an error, without the path the warning names anyway."""
    text = next(iter(str(error).splitlines()), "").removeprefix(f"{path}: ")
    if not isinstance(error, (DamagedCache, RamlabError)):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:MAX_REASON]


def discard(path: Path, error: Exception, *, then: str) -> None:
    """Delete a damaged cache file and say so, naming it, in one line on stderr."""
    path.unlink(missing_ok=True)
    print(
        f"ramlab: warning: damaged cache file {path} ({_reason(error, path)}); deleted it, {then}",
        file=sys.stderr,
        flush=True,
    )


# A temp file of the cache untouched this long is a killed write's (writing one takes seconds).
STALE_TEMP_SECONDS = 3600.0

MACHINE_ERRORS = frozenset({errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EACCES, errno.EPERM})


def read_or_discard(path: Path, read: Callable[[Path], T], *, then: str) -> T | None:
    """`read(path)`, or None after `discard` when it fails (`then`: what comes next). Any
    failure of the file's contents means damage: it is rebuilt, never trusted. A failure of
    the machine is not the file's: out of memory, a disk error, too many open files or no
    permission is raised, the file kept (a damaged zip's seek fails with EINVAL: damage); a
    file another process removed meanwhile is simply absent (None), and one it replaced meanwhile
    on NFS (ESTALE: the handle read is gone, the new copy is good) is read again, once."""
    for attempt in (1, 2):
        try:
            return read(path)
        except FileNotFoundError:
            return None
        except MemoryError:
            raise
        except OSError as error:
            if error.errno == errno.ESTALE and attempt == 1:
                continue  # replaced meanwhile on NFS: the new copy is good, read it
            if error.errno in MACHINE_ERRORS:
                raise
            discard(path, error, then=then)
            return None
        except Exception as error:
            discard(path, error, then=then)
            return None
    return None  # a second ESTALE was discarded above; not reached
