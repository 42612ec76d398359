"""The team workflow on a real smoke run: check-lock in clean clones,
and results shared through a DVC remote."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, clone, dvc, set_lr, tool

from mnist_tools.smoke import git

pytestmark = pytest.mark.e2e


def stale_stages(output: str) -> set[str]:
    return {
        line.removeprefix("stale: ").split(":")[0]
        for line in output.splitlines()
        if line.startswith("stale: ")
    }


def test_clean_clone_passes_and_a_param_change_fails_naming_stage_and_key(
    template: Path, tmp_path: Path
) -> None:
    work = clone(template, tmp_path / "clone")
    with (work / "README.md").open("a") as f:
        f.write("\nA README edit is not staleness.\n")
    passed = tool(work, "lockcheck")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.startswith("dvc.lock matches params and code")

    old = set_lr(work, "lenet", 0.0123)
    failed = tool(work, "lockcheck")
    assert failed.returncode == 1
    assert f"stale: train@lenet: params models.lenet.lr {old} → 0.0123" in failed.stdout.splitlines()
    # validate reads all of params.yaml; no other stage reads models.lenet: ensemble, summary and plot name
    # the files they read, which change only once train@lenet reruns (until then dvc.lock's records agree)
    assert stale_stages(failed.stdout) == {"validate", "train@lenet"}
    assert failed.stdout.splitlines()[-1].startswith("dvc.lock is stale: run `dvc repro`")


def test_a_module_edit_names_every_stage_that_imports_it(template: Path, tmp_path: Path) -> None:
    work = clone(template, tmp_path / "clone")
    with (work / "src" / "mnist_pipeline" / "inference.py").open("a") as f:
        f.write("\n# edited\n")
    result = tool(work, "lockcheck")
    assert result.returncode == 1
    models = list(yaml.safe_load((work / "params.yaml").read_text())["models"])
    # train, evaluate, ensemble and plot import inference.py (plot through runtime; test_dvc_deps keeps
    # dvc.yaml honest)
    assert stale_stages(result.stdout) == {
        f"{stage}@{m}" for stage in ("train", "evaluate") for m in models
    } | {"ensemble", "plot"}
    assert "src/mnist_pipeline/inference.py changed" in result.stdout


def test_a_lock_from_two_runs_is_caught(template: Path, tmp_path: Path) -> None:
    """One stage's record of its input differs from what the stage that wrote it recorded."""
    work = clone(template, tmp_path / "clone")
    lock_path = work / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    for dep in lock["stages"]["evaluate@cnn2"]["deps"]:
        if dep["path"] == "models/cnn2.pt":
            dep["md5"] = "0" * 32
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    result = tool(work, "lockcheck")
    assert result.returncode == 1
    assert "stale: evaluate@cnn2: models/cnn2.pt is not the one train@cnn2 last wrote" in result.stdout

    lock = yaml.safe_load((template / "dvc.lock").read_text())
    for dep in lock["stages"]["ensemble"]["deps"]:
        if dep["path"] == "data/logits/lenet.pt":  # as if evaluate@lenet reran and ensemble did not
            dep["md5"] = "1" * 32
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    result = tool(work, "lockcheck")
    assert stale_stages(result.stdout) == {"ensemble"}
    assert "data/logits/lenet.pt is not the one evaluate@lenet last wrote" in result.stdout


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_results_travel_through_a_remote_without_retraining(repo: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    # The teammate who ran the pipeline: a clone that shares the run's cache and adds the team's remote.
    runner = clone(repo, tmp_path / "runner")
    dvc(runner, "cache", "dir", "--local", str(repo / ".dvc" / "cache"))
    dvc(runner, "remote", "add", "-d", "team", str(storage))
    git(runner, "commit", "-q", "-am", "the team's DVC remote")

    unpushed = tool(runner, "remote", "check")
    assert unpushed.returncode == 1
    assert (
        "lacks" in unpushed.stderr and "models/lenet.pt" in unpushed.stderr and "data/raw" in unpushed.stderr
    )
    summary = tool(runner, "remote", "check", "--md")
    assert summary.returncode == 1 and "- `models/bnnet.pt`" in summary.stdout
    pushed = tool(runner, "remote", "push")
    assert pushed.returncode == 0, pushed.stderr
    assert tool(runner, "remote", "check").returncode == 0

    # Another teammate: a fresh clone pulls everything and runs nothing.
    mate = clone(runner, tmp_path / "mate")
    assert tool(mate, "remote", "check").returncode == 0  # what CI runs: no local cache at all
    pulled = tool(mate, "remote", "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert "up to date" in dvc(mate, "status")  # so `dvc repro` would run nothing
    assert md5(mate / "models" / "lenet.pt") == md5(repo / "models" / "lenet.pt")

    # A model registry's view: register a version (GTO's git tag),
    # then `dvc artifacts get` fetches it from the remote.
    identity = {
        f"GIT_{who}_{what}": value
        for who in ("AUTHOR", "COMMITTER")
        for what, value in (("NAME", "registry"), ("EMAIL", "registry@localhost"))
    }
    subprocess.run(
        [str(BIN / "gto"), "register", "bnnet"],
        cwd=mate,
        check=True,
        capture_output=True,
        env=os.environ | identity,
    )
    fetched = tmp_path / "fetched.pt"
    dvc(tmp_path, "artifacts", "get", str(mate), "bnnet", "-o", str(fetched))
    assert md5(fetched) == md5(repo / "models" / "bnnet.pt")
