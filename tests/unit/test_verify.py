"""make verify: each output, hashed now, matches, differs, is missing or new against a commit's dvc.lock; the
outputs that carry wall-clock time or the machine's name are listed apart, and they are exactly those."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import load_params, model_names
from mnist_tools.lockcheck import LockedFile
from mnist_tools.smoke import git
from mnist_tools.verify import (
    TIMED_OUTPUTS,
    Hasher,
    Outcome,
    committed_lock,
    compare_outputs,
    is_timed,
    report,
)

ROOT = Path(__file__).resolve().parents[2]


def declared_outputs() -> set[str]:
    """Every output path dvc.yaml declares, foreach stages expanded over params.yaml's models."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    names = model_names(load_params(ROOT / "params.yaml"))
    paths = set()
    for stage in stages.values():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for out in body.get(kind, []):
                path = next(iter(out)) if isinstance(out, dict) else out
                paths |= {path.replace("${key}", name) for name in names} if "${key}" in path else {path}
    return paths


def test_each_timed_pattern_matches_a_declared_output_and_the_timed_ones_are_these() -> None:
    outputs = declared_outputs()
    timed = {path for path in outputs if is_timed(path)}
    for pattern in TIMED_OUTPUTS:
        assert any(is_timed(path) and Path(path).match(pattern) for path in outputs), pattern
    # what a run on another machine or another minute may change; everything else must reproduce
    names = model_names(load_params(ROOT / "params.yaml"))
    assert timed == {
        "plots/leaderboard.csv",
        "plots/leaderboard.md",
        "plots/train",
        "metrics/timing",
        "metrics/env",
        *(f"data/{kind}/{m}" for kind in ("training", "evaluation") for m in names),
    }
    assert {
        "models/lenet.pt",
        "data/logits/lenet.pt",
        "metrics/lenet.json",
        "metrics/summary.json",  # no wall-clock seconds since train_s moved to the leaderboard
        "plots/figures",
        "plots/predictions",
        "plots/per_class",
        "data/ensemble/predictions.csv",
    } <= outputs - timed


def test_each_output_matches_differs_is_missing_or_new_by_its_bytes_now() -> None:
    committed = {
        "models/a.pt": LockedFile("train@a", "1"),
        "models/b.pt": LockedFile("train@b", "2"),
        "models/c.pt": LockedFile("train@c", "3"),
        "metrics/timing": LockedFile("evaluate@a", "4"),
    }
    # the workspace's lock says b is 2: only its bytes, hashed now, show it is not
    workspace = {**committed, "models/d.pt": LockedFile("train@d", "5")}
    now = {"models/a.pt": "1", "models/b.pt": "7", "models/d.pt": "5", "metrics/timing": "8"}
    hashed = []

    def hash_output(path: str) -> str | None:
        hashed.append(path)
        return now.get(path)

    def diagnose(path: str, locked: LockedFile, actual: str, recorded: str | None) -> tuple[str, ...]:
        return (f"{path} {locked.md5} {actual} {recorded}",)

    assert compare_outputs(committed, workspace, hash_output, diagnose) == [
        Outcome("metrics/timing", "evaluate@a", "-", True),
        Outcome("models/a.pt", "train@a", "matches", False),
        Outcome("models/b.pt", "train@b", "differs", False, ("models/b.pt 2 7 2",)),
        Outcome("models/c.pt", "train@c", "missing", False),
        Outcome("models/d.pt", "train@d", "new", False, ("not in the commit's dvc.lock",)),
    ]
    assert sorted(hashed) == ["models/a.pt", "models/b.pt", "models/c.pt"]  # timed outputs are not hashed


MATCH = "{} of {} outputs match main's dvc.lock bit for bit, each file hashed now"


@pytest.mark.parametrize(
    ("states", "ok", "last"),
    [
        (
            ["matches", "matches"],
            True,
            ["2 of 2 outputs match main's dvc.lock bit for bit, each file hashed now"],
        ),
        (
            ["matches", "differs"],
            False,
            [f"{MATCH.format(1, 2)}; 1 does not: models/1.pt"],
        ),
        (
            ["missing", "differs"],
            False,
            [
                f"{MATCH.format(0, 2)}; 2 do not: models/0.pt, models/1.pt",
                "get the missing ones with `make pull` (the team's DVC remote) or `make repro`",
            ],
        ),
    ],
)
def test_the_report_fails_on_any_compared_output_and_never_on_a_timed_one(
    states: list[str], ok: bool, last: list[str]
) -> None:
    outcomes = [
        Outcome(f"models/{i}.pt", f"train@{i}", state, False, ("why", "repair") if state == "differs" else ())
        for i, state in enumerate(states)
    ]
    outcomes.append(Outcome("metrics/timing/0.json", "evaluate@0", "-", True))
    text, passed = report(outcomes, "main")
    assert passed is ok
    lines = text.splitlines()
    assert lines[0] == f"{states[0]:<8} models/0.pt  (train@0)"
    assert ("         why" in lines) is ("differs" in states)  # the detail, indented under its output
    assert "wall-clock time or machine name, not compared (1):" in lines
    assert "  metrics/timing/0.json  (evaluate@0)" in lines
    assert lines[-len(last) :] == last
    assert "reproduced" not in text  # a pulled file matches as well as a rebuilt one: the report cannot tell


def dvc_project(root: Path) -> Path:
    """A git + DVC project with one file and one folder added to DVC's cache."""
    git(root, "init", "-q", "-b", "main")
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True)
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("a\r\n")
    (root / "data" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4096)
    (root / "model.pt").write_bytes(b"weights")
    subprocess.run(["dvc", "add", "-q", "data", "model.pt"], cwd=root, check=True)
    return root


def test_files_and_folders_hash_as_dvc_records_them_and_cache_objects_are_checked(tmp_path: Path) -> None:
    root = dvc_project(tmp_path)
    hasher = Hasher(root)
    for name in ("data", "model.pt"):
        recorded = yaml.safe_load((root / f"{name}.dvc").read_text())["outs"][0]["md5"]
        assert hasher.output(root / name) == recorded
        assert hasher.cache_problem(recorded) is None
    assert hasher.output(root / "nothing") is None
    # a changed byte in a folder changes its digest
    (root / "data" / "a.txt").write_text("a\n")
    assert hasher.output(root / "data") != yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"]
    # a bad object, and a bad object inside a folder's listing
    model = yaml.safe_load((root / "model.pt.dvc").read_text())["outs"][0]["md5"]
    obj = hasher.cache_object(model)
    assert obj == root / ".dvc" / "cache" / "files" / "md5" / model[:2] / model[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"weightz")
    assert hasher.cache_problem(model) == f"bad (its md5 is {hashlib.md5(b'weightz').hexdigest()})"
    folder = yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"]
    inner = hasher.cache_object(hashlib.md5(b"a\r\n").hexdigest())
    inner.unlink()
    assert hasher.cache_problem(folder) == f"absent for a.txt ({inner})"
    assert hasher.cache_problem("0" * 32) == "absent"


def test_a_revision_without_a_lock_is_one_error_naming_the_fix(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-q", "-m", "lock")
    assert committed_lock("HEAD", tmp_path) == {"schema": "2.0", "stages": {}}
    with pytest.raises(PipelineError) as error:
        committed_lock("no-such-rev", tmp_path)
    assert str(error.value).startswith("`git show no-such-rev:dvc.lock` failed: fatal: ")
    assert str(error.value).endswith("(fix: name a commit that has a dvc.lock, e.g. `make verify REV=HEAD`)")
