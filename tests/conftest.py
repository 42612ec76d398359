"""Shared fixtures: a loopback MNIST mirror and tiny generated IDX files."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch

from mnist_pipeline.smoke import git, run_smoke

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "mnist"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def serve_dir() -> Iterator:
    """Start loopback HTTP servers over folders; returns a function folder → base URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def mnist_mirror(serve_dir) -> str:
    """Base URL serving the four official MNIST files: $MNIST_MIRROR, else a loopback server over shared/mnist."""
    if os.environ.get("MNIST_MIRROR"):
        return os.environ["MNIST_MIRROR"].replace(",", " ").split()[0]
    if SHARED_MNIST.is_dir():
        return serve_dir(SHARED_MNIST)
    pytest.skip("no MNIST source: set MNIST_MIRROR to a mirror of the four MNIST .gz files")


def write_idx(folder: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write uncompressed IDX files as MNIST names them: (N, 28, 28) uint8 images, (N,) labels."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, h, w) + images.numpy().tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.to(torch.uint8).numpy().tobytes())


@pytest.fixture
def tiny_raw(tmp_path: Path) -> Path:
    """A data/raw folder holding a 120-image training set and a 30-image test set with known pixels."""
    root = tmp_path / "raw"
    generator = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 120), ("t10k", 30)):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
        images[:, 0, 0] = labels.to(torch.uint8)  # lets a test check that images stay with their labels
        write_idx(root / "MNIST" / "raw", prefix, images, labels)
    return root


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def dvc(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


@pytest.fixture(scope="session")
def repo(tmp_path_factory, mnist_mirror) -> Path:
    """A git repo whose main branch holds a completed smoke run of the project (shared: leave main as found)."""
    env = {"MNIST_MIRROR": mnist_mirror, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    path = tmp_path_factory.mktemp("e2e") / "project"
    run_smoke(ROOT, path)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "smoke run")
    yield path
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
