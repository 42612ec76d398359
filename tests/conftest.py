"""Shared fixtures: a loopback MNIST mirror and tiny generated IDX files."""

from __future__ import annotations

import fcntl
import functools
import gzip
import http.server
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from mnist_pipeline.cli import stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import PORTABLE_ENV
from mnist_tools.smoke import git

# Stages pin their CPU kernels before torch computes anything (params.yaml's numerics: portable). Tests call
# stage mains in this process too, so the whole test process takes the portable caps before its first kernel.
os.environ.update(PORTABLE_ENV)

ROOT = Path(__file__).resolve().parents[1]
# The folder of the four official .gz files that .ci/with_mirror serves; the same default.
MNIST_DIR = Path(os.environ.get("MNIST_DIR", ROOT.parent / "shared" / "mnist"))
NO_MNIST = (
    "no MNIST source for the download and end-to-end tests: set MNIST_MIRROR to a mirror of the four "
    "MNIST .gz files, or MNIST_DIR to a folder holding them (.ci/run serves it)"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI a missing MNIST copy fails the run at once instead of skipping the end-to-end tests."""
    has_mnist = os.environ.get("MNIST_MIRROR") or (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
    if os.environ.get("CI", "").lower() == "true" and not has_mnist:
        pytest.exit(f"error: CI=true but {NO_MNIST}", returncode=2)


@pytest.fixture(autouse=True)
def fresh_stage_record() -> Iterator[None]:
    """Each stage process names its stage once (cli.stage_outputs); tests run many mains in one process."""
    yield
    stage_outputs("")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(folder: Path) -> http.server.ThreadingHTTPServer:
    """A loopback HTTP server over folder, serving from a daemon thread; its URL: base_url(server)."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def base_url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="session")
def serve_dir() -> Iterator:
    """Start loopback HTTP servers over folders; returns a function folder → base URL."""
    servers = []

    def start(folder: Path) -> str:
        servers.append(serve(folder))
        return base_url(servers[-1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def mnist_mirror(serve_dir) -> str:
    """Base URL serving the four official MNIST files: $MNIST_MIRROR,
    else a loopback server over $MNIST_DIR."""
    if os.environ.get("MNIST_MIRROR"):
        return os.environ["MNIST_MIRROR"].replace(",", " ").split()[0]
    if (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return serve_dir(MNIST_DIR)
    pytest.skip(NO_MNIST)


def write_idx(folder: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write uncompressed IDX files as MNIST names them: (N, 28, 28) uint8 images, (N,) labels."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, h, w) + images.numpy().tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + labels.to(torch.uint8).numpy().tobytes()
    )


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


def digit_images(repo: Path, folder: Path) -> list[Path]:
    """Three test digits of repo's processed split, saved as PNG files in folder (created)."""
    images, _ = load_split(repo / "data" / "processed" / "test.pt")
    folder.mkdir()
    paths = [folder / f"digit{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        Image.fromarray(images[i].numpy()).save(path)
    return paths


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` printed as run."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def dvc(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


BIN = Path(sys.executable).parent


def tool(repo: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of the project's tools in repo, with repo's own source first on the import path."""
    env = os.environ | {"PYTHONPATH": str(repo / "src"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", f"mnist_tools.{module}", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )


def make(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """`make` in repo with this test run's interpreter, taking the venv as installed."""
    env = os.environ | {"PYTHONPATH": str(repo / "src"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", *args], cwd=repo, capture_output=True, text=True, env=env
    )


def table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """`dvc exp show`'s table → (column names, {row name: cells}); rules and blank lines left out."""
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.strip().startswith("─")]
    header, cells = lines[0], len(lines[0]) - 1
    return header, {" ".join(row[:-cells]): row[-cells:] for row in lines[1:]}


def markdown_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """`make exps`'s Markdown table → (column names, {experiment: the other cells}), the rule left out."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(line.startswith("|") and line.endswith("|") for line in lines), text
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert set("".join(cells[1])) <= set("-:"), text  # the rule under the header
    return cells[0], {row[0]: row[1:] for row in cells[2:]}


def clone(source: Path, dest: Path) -> Path:
    """A fresh git clone: no data, models or DVC cache, as CI checks out a pull request."""
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True)
    return dest


def workspace_state(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file of a project folder, leaving out git's, the venv's and bytecode."""
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", "mutants"}
    state = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            stat = (Path(folder) / name).lstat()
            state[os.path.relpath(Path(folder) / name, root)] = (stat.st_size, stat.st_mtime_ns)
    return state


@dataclass
class SmokeRun:
    """A completed `make smoke` of this project,
    and what it changed in the project folder (nothing, we hope)."""

    path: Path
    changed_in_workspace: list[str]


@dataclass
class SmokeBuild:
    """`make smoke` into folder/project, started while the unit tests run (it spends most of its time
    importing). Under pytest-xdist (`make test`) the workers share one build: the first worker starts it,
    the build writes its exit status to folder/status, and the first worker to read it commits the run."""

    folder: Path
    process: subprocess.Popen | None  # in the process that started it
    server: http.server.ThreadingHTTPServer | None

    @property
    def path(self) -> Path:
        return self.folder / "project"

    def wait(self) -> int:
        """The build's exit status, once it has written it (-1: it was killed first)."""
        status = self.folder / "status"
        while not status.exists():
            if self.process is not None and self.process.poll() is not None and not status.exists():
                return -1
            time.sleep(0.5)
        return int(status.read_text())


SMOKE_FOLDER = "mnist_smoke_folder"  # the workerinput key naming the shared build's folder


def start_smoke(folder: Path, mirror: str | None) -> SmokeBuild:
    """Start `make smoke` into folder/project against mirror (None: a loopback server over MNIST_DIR)."""
    server = None if mirror else serve(MNIST_DIR)
    env = {"MNIST_MIRROR": mirror or base_url(server), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    (folder / "before.json").write_text(json.dumps(workspace_state(ROOT)))
    # -o: take the installed venv as it is (the test run already uses it); the status file appears whole
    script = 'make -s -o .venv/.installed smoke SMOKE_DIR="$1"; echo $? > "$2.tmp"; mv "$2.tmp" "$2"'
    with (folder / "smoke.log").open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", script, "smoke", str(folder / "project"), str(folder / "status")],
            cwd=ROOT,
            env=os.environ | env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return SmokeBuild(folder, process, server)


def smoke_folder(config: pytest.Config) -> tuple[Path, bool]:
    """Where the smoke build goes, and whether this process starts it: under pytest-xdist the folder
    the controller named (pytest_configure_node) and the first worker; else a new folder, and this process."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return Path(tempfile.mkdtemp(prefix="mnist-e2e-")), True
    return Path(workerinput[SMOKE_FOLDER]), workerinput["workerid"] == "gw0"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist's controller: every worker learns the one folder the shared smoke build goes to."""
    if not hasattr(node.config, SMOKE_FOLDER):
        setattr(node.config, SMOKE_FOLDER, tempfile.mkdtemp(prefix="mnist-e2e-"))
    node.workerinput[SMOKE_FOLDER] = getattr(node.config, SMOKE_FOLDER)


_smoke: list[SmokeBuild] = []  # the build started at collection, if any e2e test was collected


@pytest.hookimpl(trylast=True)  # after pytest-randomly has shuffled the order
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Run the end-to-end tests last, and start the smoke run they share now,
    so it builds during the unit tests."""
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    items[:] = [item for item in items if not item.get_closest_marker("e2e")] + e2e
    mirror = os.environ.get("MNIST_MIRROR", "").replace(",", " ").split()
    if (
        e2e
        and not config.option.collectonly
        and (mirror or (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file())
    ):
        folder, starts = smoke_folder(config)
        _smoke.append(
            start_smoke(folder, mirror[0] if mirror else None) if starts else SmokeBuild(folder, None, None)
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for build in _smoke:
        if build.process is not None and build.process.poll() is None:  # the run stopped early (-x, Ctrl-C)
            # another xdist worker may still need the build, unless Ctrl-C stopped them all
            if not hasattr(session.config, "workerinput") or exitstatus == pytest.ExitCode.INTERRUPTED:
                os.killpg(build.process.pid, signal.SIGKILL)
            build.process.wait()
        if build.server:
            build.server.shutdown()
            build.server.server_close()
        if not hasattr(session.config, "workerinput"):
            shutil.rmtree(build.folder, ignore_errors=True)  # ~200 MB
    if hasattr(session.config, SMOKE_FOLDER):  # the xdist controller, once every worker is done
        shutil.rmtree(getattr(session.config, SMOKE_FOLDER), ignore_errors=True)


def commit_smoke(build: SmokeBuild) -> list[str]:
    """Commit the finished smoke run as main, once whichever worker comes first; the files it changed in
    this workspace (none, we hope)."""
    with (build.folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = build.folder / "changed.json"
        if not record.exists():
            before = {k: tuple(v) for k, v in json.loads((build.folder / "before.json").read_text()).items()}
            after = workspace_state(ROOT)
            git(build.path, "add", "-A")
            git(build.path, "commit", "-q", "-m", "smoke run")
            record.write_text(
                json.dumps(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))
            )
        return json.loads(record.read_text())


@pytest.fixture(scope="session")
def smoke_run(mnist_mirror) -> Iterator[SmokeRun]:
    """The smoke run started at collection, committed there as main:
    the template every end-to-end test copies."""
    if not _smoke:
        _smoke.append(start_smoke(Path(tempfile.mkdtemp(prefix="mnist-e2e-")), mnist_mirror))
    build = _smoke[0]
    if build.wait() != 0:
        pytest.fail(f"make smoke failed:\n{(build.folder / 'smoke.log').read_text()[-4000:]}", pytrace=False)
    changed = commit_smoke(build)
    env = {"MNIST_MIRROR": mnist_mirror, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # later dvc commands in the copies find the mirror and this venv
    yield SmokeRun(build.path, changed)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def template(smoke_run: SmokeRun) -> Iterator[Path]:
    """The smoke run itself, for tests that only read it or `git clone` it (a copy costs ~200 MB of writes).

    Fails the test that changed it: every other end-to-end test copies it.
    """
    skip = ".dvc" + os.sep + "tmp" + os.sep  # DVC's own locks and caches, rewritten by read-only commands
    before = {k: v for k, v in workspace_state(smoke_run.path).items() if not k.startswith(skip)}
    yield smoke_run.path
    after = {k: v for k, v in workspace_state(smoke_run.path).items() if not k.startswith(skip)}
    assert after == before, "this test changed the shared smoke run: take the `repo` fixture (a copy) instead"


@pytest.fixture
def repo(smoke_run: SmokeRun, tmp_path: Path) -> Iterator[Path]:
    """This test's own copy of the smoke run (git history, workspace, DVC cache):
    change it freely, in any order."""
    path = tmp_path / "project"
    shutil.copytree(smoke_run.path, path, symlinks=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)  # ~200 MB each


def set_lr(repo: Path, model: str, lr: float) -> float:
    """Change one model's lr in params.yaml the way a person edits it (one line); return the old value."""
    path = repo / "params.yaml"
    old = yaml.safe_load(path.read_text())["models"][model]["lr"]
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {model}:"))
    at = next(i for i in range(start, len(lines)) if lines[i].startswith("    lr:"))
    lines[at] = f"    lr: {lr}\n"
    path.write_text("".join(lines))
    return old
