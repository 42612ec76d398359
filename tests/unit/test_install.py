"""requirements.txt pins everything we import or call,
and `make install` reruns only the steps whose inputs changed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CALLED = {"dvc", "gto", "mutmut", "pytest-randomly"}  # run as commands or plugins, never imported


def pinned(requirements: Path) -> dict[str, str]:
    """{normalised distribution name: version} of requirements.txt;
    any line that is not `name==version` fails."""
    pins = {}
    for line in requirements.read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][^\s;]*)", spec)
            assert match, f"requirements.txt: {line!r} is not pinned as name==version"
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> set[str]:
    """Distributions whose modules the code, stages and tests import
    (top-level names through the installed metadata)."""
    names = set()
    for path in [
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "stages").glob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    owners = packages_distributions()
    ours = {"mnist_pipeline", "mnist_tools", "conftest"}
    return {
        normalise(dist)
        for name in names - set(sys.stdlib_module_names) - ours
        for dist in owners.get(name, [name])
    }


def test_everything_imported_or_called_is_pinned() -> None:
    wanted = imported_distributions() | CALLED
    assert {"torch", "dvc", "scikit-learn", "pyyaml"} <= wanted  # the scan found the imports
    assert wanted - set(pinned(ROOT / "requirements.txt")) == set()


def test_an_unpinned_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("torch==2.14.1\npandas>=2  # a range\n")
    with pytest.raises(AssertionError, match="'pandas>=2  # a range' is not pinned"):
        pinned(tmp_path / "requirements.txt")


def outside_make() -> dict[str, str]:
    """This environment without what a calling make (`make test`) passes down:
    flags, depth, directory notes."""
    return {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
    }


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A copy of the Makefile and the install's inputs, every step marked done by `make -t`
    (nothing installed)."""
    for name in ("Makefile", "requirements.txt", "pyproject.toml", "src/mnist_tools/offline_plots.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / ".venv" / "share").mkdir(parents=True)
    subprocess.run(
        ["make", "-s", "-t", "install"], cwd=tmp_path, check=True, capture_output=True, env=outside_make()
    )
    return tmp_path


def commands_after_editing(project: Path, edited: str) -> list[str]:
    """What `make install` would run (make -n) after `edited` changed."""
    later = max(p.stat().st_mtime for p in project.rglob("*") if p.is_file()) + 10
    os.utime(project / edited, (later, later))
    dry = subprocess.run(
        ["make", "-n", "install"], cwd=project, check=True, capture_output=True, text=True, env=outside_make()
    )
    return [
        line
        for line in dry.stdout.splitlines()
        if line.strip() not in ("", "true") and not line.startswith("touch ")
    ]


@pytest.mark.parametrize(
    ("edited", "reruns"),
    [
        ("requirements.txt", ["-m venv .venv", "pip install -r requirements.txt"]),
        ("pyproject.toml", ["pip install --no-deps --no-build-isolation -e ."]),
        (
            "src/mnist_tools/offline_plots.py",
            ["-m mnist_tools.offline_plots", "dvc config --local plots.html_template"],
        ),
        ("Makefile", []),
    ],
)
def test_install_reruns_only_the_steps_whose_inputs_changed(
    installed: Path, edited: str, reruns: list[str]
) -> None:
    assert commands_after_editing(installed, "Makefile") == []  # all done: nothing to run
    commands = commands_after_editing(installed, edited)
    assert len(commands) == len(reruns) and all(
        want in got for want, got in zip(reruns, commands, strict=True)
    ), commands
