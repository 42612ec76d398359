"""Runs that go wrong, through the real DVC CLI on the smoke run: typos, failed experiments, offline."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import dvc

pytestmark = pytest.mark.e2e

# what a failed train@lenet would have cost: its model, history and machine record, and its scores
LENET_OUTPUTS = (
    "models/lenet.pt",
    "data/training/lenet/history.csv",
    "data/training/lenet/env.json",
    "data/evaluation/lenet/metrics.json",
)


def snapshot(repo: Path, paths: tuple[str, ...]) -> dict[str, str | None]:
    return {
        p: hashlib.md5((repo / p).read_bytes()).hexdigest() if (repo / p).is_file() else None for p in paths
    }


def dvc_run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, env=env)


def test_a_params_typo_stops_before_any_output_is_deleted(repo: Path) -> None:
    before = snapshot(repo, LENET_OUTPUTS)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["lenet"]["momentun"] = 0.9
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dvc_run(repo, "repro")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown key models.lenet.momentun (did you mean models.lenet.momentum?)" in output
    assert "`git show HEAD:params.yaml > params.yaml` restores the committed file" in output
    assert "Running stage 'train@lenet'" not in output
    assert snapshot(repo, LENET_OUTPUTS) == before and None not in before.values()


def test_a_failed_exp_run_keeps_the_outputs_and_names_the_restore(repo: Path) -> None:
    before = snapshot(repo, LENET_OUTPUTS)
    result = dvc_run(repo, "exp", "run", "-S", "models.lenet.lr=abc")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "models.lenet.lr = 'abc' is a str; it must be a float" in output
    assert "`git show HEAD:params.yaml > params.yaml`" in output
    assert snapshot(repo, LENET_OUTPUTS) == before
    # DVC applied -S to params.yaml and left it so: the named command brings the workspace back whole
    # (git's own checkout can miss it: DVC rewrote the index after the same-length edit, so git's stat check
    # calls the file unchanged)
    subprocess.run("git show HEAD:params.yaml > params.yaml", shell=True, cwd=repo, check=True)
    assert "up to date" in dvc(repo, "status")


def test_a_forced_rerun_offline_keeps_mnist(repo: Path) -> None:
    # `dvc repro -f train@lenet` without -s reruns download too; no mirror answers on a closed port
    env = os.environ | {"MNIST_MIRROR": "http://127.0.0.1:9/"}
    result = dvc_run(repo, "repro", "-f", "train@lenet", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Running stage 'download'" in output and "kept MNIST in data/raw" in output
    assert "Running stage 'train@lenet'" in output
    assert "up to date" in dvc(repo, "status", "train@lenet")
