"""The Makefile's user side: `make help` in two sorted groups, `make exps` as a table that survives a pipe,
and what .gitignore keeps out of git."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_tools.smoke import copy_project, git

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EVERYDAY = {"install", "repro", "test", "smoke", "exps", "predict", "push", "pull", "verify"}
TEAM = {
    "bench",
    "bench-quick",
    "bench-levers",
    "cpu-zoo",
    "relay",
    "frontier",
    "mutation",
    "lint",
    "format",
    "check-lock",
    "clean-venv",
    "install-test",
}


def make(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`make` in cwd as a user calls it (not from make), the install taken as done, with this venv's dvc."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
    )


def help_groups() -> dict[str, list[tuple[str, str]]]:
    """`make help` → {group title: [(target, help text), ...] in the printed order}."""
    shown = make(ROOT, "-s", "help")
    assert shown.returncode == 0, shown.stderr
    groups: dict[str, list[tuple[str, str]]] = {}
    for line in shown.stdout.splitlines():
        if not line.startswith(" ") and not line.endswith(":"):
            continue  # a note, not a group
        if not line.startswith(" "):
            title = line
            groups[title] = []
        else:
            target, text = re.fullmatch(r"  make (\S+) +(.*)", line).groups()
            groups[title].append((target, text))
    return groups


def test_help_tells_a_fresh_clone_about_make_pull_first() -> None:
    assert make(ROOT, "-s", "help").stdout.splitlines()[0] == (
        "A fresh clone: `make pull` gets the team's committed run from its DVC remote in seconds; "
        "`make repro` trains it."
    )


def test_help_lists_every_target_in_two_sorted_groups_with_its_text() -> None:
    groups = help_groups()
    assert list(groups) == ["Everyday:", "For the team:"]
    everyday, team = ([target for target, _ in groups[title]] for title in groups)
    assert everyday == sorted(everyday) and team == sorted(team)
    assert EVERYDAY <= set(everyday) and set(team) == TEAM
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split()
    assert sorted(everyday + team) == sorted(phony)  # each target once
    texts = dict(re.findall(r"^([a-z-]+):.*?##(?:team)? (.*)$", makefile, re.M))
    assert dict(groups["Everyday:"] + groups["For the team:"]) == texts


@pytest.fixture
def project_with_an_experiment(tmp_path: Path) -> Path:
    """The project as committed, plus one saved experiment that set models.mlp.lr to 0.02 and scored
    mlp.acc 0.9811 (a commit under refs/exps/, as `dvc exp run` leaves it; nothing trained)."""
    project = tmp_path / "project"
    copy_project(ROOT, project)
    baseline = git(project, "rev-parse", "HEAD").strip()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["mlp"]["lr"] = 0.02
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = json.loads((project / "metrics" / "summary.json").read_text())
    summary["mlp"]["acc"] = 0.9811
    (project / "metrics" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    git(project, "commit", "-q", "-am", "lr-test")
    experiment = git(project, "rev-parse", "HEAD").strip()
    git(project, "reset", "-q", "--hard", baseline)
    git(project, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/lr-test", experiment)
    return project


def markdown_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """A Markdown table → (column names, {first cell: the other cells})."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(line.startswith("|") and line.endswith("|") for line in lines), text
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert set("".join(cells[1])) <= set("-:"), text  # the header's rule
    return cells[0], {row[0]: row[1:] for row in cells[2:]}


def test_make_exps_in_a_pipe_is_a_whole_markdown_table_with_the_changed_params_first(
    project_with_an_experiment: Path,
) -> None:
    models = [*yaml.safe_load((ROOT / "params.yaml").read_text())["models"], "ensemble"]
    shown = make(project_with_an_experiment, "exps")  # a pipe, no COLUMNS: dvc's own table is cut to 80
    assert shown.returncode == 0, shown.stderr
    assert "dvc exp show" not in shown.stdout  # the command is not echoed
    header, rows = markdown_table(shown.stdout)
    assert header == ["Experiment", "models.mlp.lr", *(f"{m}.acc" for m in models)]
    assert rows["workspace"][:2] == rows["main"][:2] == ["0.1", rows["main"][1]]
    (experiment,) = (name for name in rows if "[lr-test]" in name)
    assert rows[experiment][:3] == ["0.02", rows["main"][1], "0.9811"]

    summary = json.loads((project_with_an_experiment / "metrics" / "summary.json").read_text())
    one = make(project_with_an_experiment, "exps", "MODEL=mlp")
    assert one.returncode == 0, one.stderr
    header, rows = markdown_table(one.stdout)
    assert header == ["Experiment", "models.mlp.lr", *(f"mlp.{key}" for key in summary["mlp"])]


def test_make_exps_keeps_experiment_and_state_first_and_moves_only_the_metrics(tmp_path: Path) -> None:
    # what dvc prints after a queued grid: a State column, then metrics, then params
    table = (
        "| Experiment | State   | mlp.acc | lenet.acc | models.mlp.lr | seed |\n"
        "|------------|---------|---------|-----------|---------------|------|\n"
        "| main       | -       | 0.98    | 0.99      | 0.1           | 0    |\n"
        "| └── a1b2c3 | Success | 0.97    | 0.99      | 0.02          | 1    |\n"
    )
    (tmp_path / "probe.mk").write_text(
        f"include {ROOT / 'Makefile'}\nprobe:\n\t@METRICS='^(.*\\.acc$$)' $(METRICS_LAST)\n"
    )
    moved = make(tmp_path, "-s", "-f", "probe.mk", "probe", stdin=table)
    assert moved.returncode == 0, moved.stderr
    header, rows = markdown_table(moved.stdout)
    assert header == ["Experiment", "State", "models.mlp.lr", "seed", "mlp.acc", "lenet.acc"]
    assert rows["└── a1b2c3"] == ["Success", "0.02", "1", "0.97", "0.99"]
    widths = {len(line) for line in moved.stdout.splitlines()}
    assert len(widths) == 1  # still aligned


@pytest.mark.parametrize("path", ["dvc_plots/index.html", "dvc_plots/static/confusion.svg"])
def test_dvc_plots_output_is_ignored(path: str) -> None:
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0
