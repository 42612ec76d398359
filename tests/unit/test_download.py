"""Download faults against loopback servers: one line naming every mirror, nothing half-written left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from mnist_pipeline.data import DownloadError, download_mnist, load_raw, verified_raw

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there once the socket is closed


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers (a hung mirror)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(scope="module")
def bad_mirrors(tmp_path_factory, serve_dir, mnist_mirror) -> dict[str, str]:
    """Mirrors serving truncated and corrupted copies of the real files."""
    truncated, corrupted = tmp_path_factory.mktemp("truncated"), tmp_path_factory.mktemp("corrupted")
    for name in FILES:
        with urllib.request.urlopen(mnist_mirror + name, timeout=30) as response:
            data = response.read()
        (truncated / name).write_bytes(data[: len(data) // 2])
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF
        (corrupted / name).write_bytes(bytes(flipped))
    return {"truncated": serve_dir(truncated), "corrupted": serve_dir(corrupted)}


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == [], "a partial download was left behind"


def failing_download(tmp_path: Path, mirrors: list[str], timeout_s: float = 5) -> str:
    out = tmp_path / "data" / "raw"
    with pytest.raises(DownloadError) as info:
        download_mnist(out, mirrors, timeout_s)
    assert_nothing_left(out)
    message = str(info.value)
    assert "\n" not in message and "MNIST_MIRROR" in message
    for mirror in mirrors:
        assert mirror in message
    return message


def test_refused_connection(tmp_path: Path) -> None:
    assert "Connection refused" in failing_download(tmp_path, [closed_port_url()])


def test_timeout(tmp_path: Path, silent_server: str) -> None:
    assert "timed out" in failing_download(tmp_path, [silent_server], timeout_s=0.5)


def test_not_found(tmp_path: Path, serve_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "404" in failing_download(tmp_path / "x", [serve_dir(empty)])


@pytest.mark.parametrize("kind", ["truncated", "corrupted"])
def test_bad_file_is_refused_by_md5(tmp_path: Path, bad_mirrors: dict[str, str], kind: str) -> None:
    assert "corrupted" in failing_download(tmp_path, [bad_mirrors[kind]])


def test_every_mirror_is_named_and_a_later_good_one_wins(tmp_path: Path, bad_mirrors, mnist_mirror) -> None:
    out = tmp_path / "data" / "raw"
    failing_download(tmp_path, [closed_port_url(), bad_mirrors["corrupted"]])
    download_mnist(out, [closed_port_url(), bad_mirrors["truncated"], mnist_mirror], timeout_s=30)
    images, labels = load_raw(out, train=True)
    assert images.shape == (60_000, 28, 28) and labels.bincount().tolist()[1] == 6742
    assert sorted(p.name for p in out.parent.iterdir()) == ["raw"]


NEEDS_MNIST = "tests/unit/test_download.py::test_every_mirror_is_named_and_a_later_good_one_wins"


@pytest.mark.parametrize("ci", ["true", ""])
def test_without_mnist_ci_fails_in_one_line_and_a_local_run_skips(tmp_path: Path, ci: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MNIST_MIRROR", "CI")}
    env |= {"CI": ci, "MNIST_DIR": str(tmp_path)}  # an empty folder: no .gz files
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-rs",
            NEEDS_MNIST,
        ],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        env=env,
    )
    if ci:
        assert result.returncode == 2
        assert (
            "error: CI=true but no MNIST source for the download and end-to-end tests: set MNIST_MIRROR to a "
            "mirror of the four MNIST .gz files, or MNIST_DIR to a folder holding them"
        ) in result.stdout
        assert "passed" not in result.stdout and "skipped" not in result.stdout
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout
        assert "SKIPPED" in result.stdout and "set MNIST_MIRROR" in result.stdout


def test_verified_files_are_kept_and_no_mirror_is_asked(tmp_path: Path, mnist_mirror: str) -> None:
    # `dvc repro -f` keeps data/raw (persist): offline, the files already there must do
    out = tmp_path / "raw"
    assert download_mnist(out, [mnist_mirror], timeout_s=30) is True
    assert verified_raw(out)
    assert download_mnist(out, [closed_port_url()], timeout_s=5) is False
    # one changed byte: fetched again, and refused offline in one line
    labels = out / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] ^= 1
    labels.write_bytes(bytes(data))
    assert not verified_raw(out)
    with pytest.raises(DownloadError, match="could not download MNIST"):
        download_mnist(out, [closed_port_url()], timeout_s=5)
    assert download_mnist(out, [mnist_mirror], timeout_s=30) is True and verified_raw(out)
