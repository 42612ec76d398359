"""make verify: each output reproduced, differing, missing or new against a commit's dvc.lock; the outputs
that carry wall-clock time or the machine's name are listed apart, and they are exactly those."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import load_params, model_names
from mnist_tools.lockcheck import LockedFile
from mnist_tools.smoke import git
from mnist_tools.verify import (
    TIMED_OUTPUTS,
    Outcome,
    committed_lock,
    compare_outputs,
    is_timed,
    report,
    unfinished_stages,
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
    assert timed == {
        "plots/leaderboard.csv",
        "plots/leaderboard.md",
        *(f"plots/train/{m}.csv" for m in model_names(load_params(ROOT / "params.yaml"))),
        *(f"metrics/timing/{m}.json" for m in model_names(load_params(ROOT / "params.yaml"))),
        *(
            f"metrics/env/{stage}/{m}.json"
            for stage in ("train", "evaluate")
            for m in model_names(load_params(ROOT / "params.yaml"))
        ),
    }
    assert {
        "models/lenet.pt",
        "data/logits/lenet.pt",
        "metrics/lenet.json",
        "metrics/summary.json",  # no wall-clock seconds since train_s moved to the leaderboard
        "plots/figures",
    } <= outputs - timed


def test_each_output_is_reproduced_differing_missing_or_new() -> None:
    committed = {
        "models/a.pt": LockedFile("train@a", "1"),
        "models/b.pt": LockedFile("train@b", "2"),
        "models/c.pt": LockedFile("train@c", "3"),
        "metrics/timing/a.json": LockedFile("evaluate@a", "4"),
    }
    workspace = {
        "models/a.pt": LockedFile("train@a", "1"),
        "models/b.pt": LockedFile("train@b", "9"),
        "models/d.pt": LockedFile("train@d", "5"),
        "metrics/timing/a.json": LockedFile("evaluate@a", "8"),
    }
    assert compare_outputs(committed, workspace) == [
        Outcome("metrics/timing/a.json", "evaluate@a", "differs", True),
        Outcome("models/a.pt", "train@a", "reproduced", False),
        Outcome("models/b.pt", "train@b", "differs", False),
        Outcome("models/c.pt", "train@c", "missing", False),
        Outcome("models/d.pt", "train@d", "new", False),
    ]


@pytest.mark.parametrize(
    ("states", "ok", "last"),
    [
        (["reproduced", "reproduced"], True, "2 of 2 outputs reproduced bit for bit"),
        (["reproduced", "differs"], False, "1 of 2 outputs reproduced bit for bit; 1 did not: models/1.pt"),
        (
            ["missing", "new"],
            False,
            "0 of 2 outputs reproduced bit for bit; 2 did not: models/0.pt, models/1.pt",
        ),
    ],
)
def test_the_report_fails_on_any_compared_output_and_never_on_a_timed_one(
    states: list[str], ok: bool, last: str
) -> None:
    outcomes = [Outcome(f"models/{i}.pt", f"train@{i}", state, False) for i, state in enumerate(states)]
    outcomes.append(Outcome("metrics/timing/0.json", "evaluate@0", "differs", True))
    text, passed = report(outcomes)
    assert passed is ok
    lines = text.splitlines()
    assert lines[0] == f"{states[0]:<11} models/0.pt  (train@0)"
    assert "wall-clock time or machine name, not compared (1):" in lines
    assert "  differs     metrics/timing/0.json  (evaluate@0)" in lines
    assert lines[-1] == last


def test_unfinished_stages_come_from_dvc_status() -> None:
    status = {"train@lenet": [{"changed outs": {"models/lenet.pt": "deleted"}}], "dvc.yaml:plot": ["changed"]}
    assert unfinished_stages(status) == ["plot", "train@lenet"]
    assert unfinished_stages({}) == []


def test_a_revision_without_a_lock_is_one_error_naming_the_fix(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-q", "-m", "lock")
    assert committed_lock("HEAD", tmp_path) == {"schema": "2.0", "stages": {}}
    with pytest.raises(PipelineError) as error:
        committed_lock("no-such-rev", tmp_path)
    assert str(error.value).startswith("`git show no-such-rev:dvc.lock` failed: fatal: ")
    assert str(error.value).endswith("(fix: name a commit that has a dvc.lock)")
