"""Everyday use installs in layers: `make install` and the targets that depend on it need no npm."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, digit_images

pytestmark = pytest.mark.e2e


def path_without(tmp_path: Path, *names: str) -> str:
    """A PATH of the same programs as now, but for names: a folder of links to every other one."""
    shim = tmp_path / "path-bin"
    shim.mkdir()
    for folder in [str(BIN), *os.environ["PATH"].split(os.pathsep)]:
        for program in sorted(Path(folder).glob("*")) if Path(folder).is_dir() else []:
            link = shim / program.name
            if program.name not in names and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(shim)


def test_install_and_predict_work_without_npm(repo: Path, tmp_path: Path) -> None:
    # The venv's packages are this test run's (pip's own steps marked done): what is checked is that no step
    # of `make install`, or of the targets that depend on it, needs npm. A venv of links to this one: its
    # python finds pyvenv.cfg beside its bin/ and the packages in its lib/.
    venv = repo / ".venv"
    venv.mkdir()
    shutil.copy(BIN.parent / "pyvenv.cfg", venv / "pyvenv.cfg")
    for folder in ("bin", "lib"):
        (venv / folder).symlink_to(BIN.parent / folder, target_is_directory=True)
    for step in (".requirements", ".editable"):
        (repo / ".venv" / step).touch()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env |= {"PATH": path_without(tmp_path, "npm", "npx", "node"), "PYTHONPATH": str(repo / "src")}
    assert subprocess.run(["sh", "-c", "command -v npm"], env=env, capture_output=True).returncode != 0

    def run_make(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-s", *args], cwd=repo, env=env, capture_output=True, text=True)

    installed = run_make("install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.splitlines() == [
        "npm not found: skipped the offline plots template (dvc plots show uses DVC's own, which loads vega "
        "from the web)"
    ]
    assert (repo / ".venv" / ".installed").exists() and not (repo / ".venv" / "share").exists()
    images = digit_images(repo, tmp_path / "digits")
    predicted = run_make("predict", "MODEL=mlp", f"IMAGES={' '.join(map(str, images))}")
    assert predicted.returncode == 0, predicted.stderr
    assert [line.split("\t")[0] for line in predicted.stdout.splitlines()] == list(map(str, images))
