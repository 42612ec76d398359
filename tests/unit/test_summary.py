"""The summary stage's headline numbers, and `make exps` on them: a Markdown table that fits a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import make, markdown_table

from mnist_pipeline.summary import headline, summarize
from mnist_tools.smoke import copy_project

ROOT = Path(__file__).resolve().parents[2]
MAX_WIDTH = 160  # characters a terminal (and the issue) allows


def metrics_of(accuracy: float, loss: float, per_class: list[float]) -> dict:
    return {
        "accuracy": accuracy,
        "loss": loss,
        "per_class_accuracy": {str(d): a for d, a in enumerate(per_class)},
    }


def test_headline_names_the_worst_digit_and_rounds_the_loss() -> None:
    per_class = [0.99, 0.995, 0.97, 0.98, 0.99, 0.96, 0.99, 0.99, 0.985, 0.975]
    assert headline(metrics_of(0.9871, 0.0412345, per_class)) == {
        "acc": 0.9871,
        "loss": 0.0412,
        "worst_digit": 5,
        "worst_acc": 0.96,
    }  # no wall-clock seconds: a bit-identical rerun leaves `dvc metrics diff` empty


def test_a_tie_goes_to_the_lower_digit() -> None:
    per_class = [0.99, 0.99, 0.97, 0.99, 0.99, 0.99, 0.99, 0.97, 0.99, 0.99]
    assert headline(metrics_of(0.99, 0.02, per_class))["worst_digit"] == 2


def test_summarize_keeps_the_order() -> None:
    per_class = [0.99] * 9 + [0.9]
    metrics = {name: metrics_of(0.98, 0.05, per_class) for name in ("mlp", "lenet", "ensemble")}
    assert list(summarize(metrics)) == ["mlp", "lenet", "ensemble"]


def test_the_committed_summary_is_what_the_committed_metrics_give() -> None:
    names = [*yaml.safe_load((ROOT / "params.yaml").read_text())["models"], "ensemble"]
    metrics = {n: json.loads((ROOT / "metrics" / f"{n}.json").read_text()) for n in names}
    assert json.loads((ROOT / "metrics" / "summary.json").read_text()) == summarize(metrics)


def width(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project as committed, in a git repo of its own with one commit (no data, models or cache)."""
    copy_project(ROOT, tmp_path / "project")
    return tmp_path / "project"


def shown_by_dvc(value: object) -> str:
    """A metric as `dvc exp show` prints it: floats to 5 significant digits (its default precision)."""
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def test_make_exps_fits_a_terminal_on_the_committed_results(project: Path) -> None:
    # the keys come from the project's own summary.json, whichever headline numbers it holds
    summary = json.loads((project / "metrics" / "summary.json").read_text())
    shown = make(project, "exps")
    assert shown.returncode == 0, shown.stderr
    assert width(shown.stdout) <= MAX_WIDTH, shown.stdout
    header, rows = markdown_table(shown.stdout)
    # no params differ between workspace and main: only each model's test accuracy
    assert header == ["Experiment", *(f"{name}.acc" for name in summary)]
    assert rows["workspace"] == rows["main"] == [shown_by_dvc(numbers["acc"]) for numbers in summary.values()]

    one = make(project, "exps", "MODEL=lenet")
    assert one.returncode == 0, one.stderr
    assert width(one.stdout) <= MAX_WIDTH, one.stdout
    header, rows = markdown_table(one.stdout)
    assert header == ["Experiment", *(f"lenet.{key}" for key in summary["lenet"])]
    assert rows["main"] == [shown_by_dvc(value) for value in summary["lenet"].values()]
