"""make push / pull / the remote check without a remote, and how DVC's cloud status is read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_tools import remote as remote_module
from mnist_tools.remote import NO_REMOTE, check_markdown, unpushed_outputs

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_files_inside_a_folder_output_are_reported_as_that_output() -> None:
    status = {
        "data/raw/MNIST/raw/train-images-idx3-ubyte": "missing",
        "data/raw": "missing",
        "models/lenet.pt": "new",
        "models/mlp.pt": "deleted",
        "data/logits/mlp.pt": "ok",
        "data/processed/test.pt": "missing",
    }
    outputs = ["data/raw", "data/processed/test.pt", "models/lenet.pt", "models/mlp.pt", "data/logits/mlp.pt"]
    # "deleted": in the remote only (a clean CI checkout has no cache) is pushed; new and missing are not
    assert unpushed_outputs(status, outputs) == ["data/processed/test.pt", "data/raw", "models/lenet.pt"]


def test_summary_sections() -> None:
    assert check_markdown(None, []).startswith("### ⏭️ DVC remote: not checked")
    assert check_markdown("team", []) == "### ✅ DVC remote `team` holds every output in dvc.lock\n"
    md = check_markdown("team", ["models/a.pt", "data/raw"])
    assert md.startswith("### ❌ DVC remote `team` lacks 2 outputs") and "- `models/a.pt`\n- `data/raw`" in md


@pytest.fixture
def bare_project(tmp_path: Path) -> Path:
    """A git + DVC repository with no remote configured."""
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    return tmp_path


def remote(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "mnist_tools.remote", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("command", ["push", "pull"])
def test_push_and_pull_without_a_remote_say_how_to_add_one(bare_project: Path, command: str) -> None:
    result = remote(bare_project, command)
    assert result.returncode == 2
    assert result.stderr == f"error: {NO_REMOTE}\n"
    assert "dvc remote add -d" in result.stderr


def test_the_check_without_a_remote_skips_and_says_so(bare_project: Path) -> None:
    result = remote(bare_project, "check")
    assert result.returncode == 0
    assert result.stdout.startswith("no DVC remote is configured: skipped")


@pytest.mark.parametrize(
    "text",
    [NO_REMOTE, check_markdown(None, []), remote_module.__doc__],
    ids=["make push/pull", "job summary", "docstring"],
)
def test_the_pointer_to_the_how_to_names_a_real_heading(text: str) -> None:
    assert "README" not in text  # the how-to moved to docs/guide.md
    pointers = re.findall(r'(docs/[\w/]+\.md): "([^"]+)"', text)
    assert pointers, text
    for doc, heading in pointers:
        assert f"\n## {heading}\n" in (ROOT / doc).read_text(), f"{doc} has no heading {heading!r}"
