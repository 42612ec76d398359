"""The README's everyday commands on a real smoke run:
experiments through the queue, make predict, the PR summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from conftest import dvc, make, table, tool
from PIL import Image

from mnist_pipeline.artifacts import load_model
from mnist_pipeline.data import load_split
from mnist_tools.predict import classify, load_image

pytestmark = pytest.mark.e2e


def experiments(shown: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json` → {experiment name: its data}, baselines left out."""
    return {
        exp["name"]: exp["data"]
        for row in shown
        for exp in (row.get("experiments") or [])
        for exp in exp["revs"]
    }


def test_a_queued_grid_runs_and_exp_show_compares_it(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # up to summary, which `make exps` reads: the figures (plot) add nothing to the comparison
    dvc(repo, "exp", "run", "--queue", "-S", "models.mlp.lr=0.02,0.2", "summary")
    # one worker: a stage already uses both cores (train.threads: 2); two would only share them
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)  # each check is a DVC process, on the cores the experiment trains on
    assert status.count("Success") == 2, status
    runs = experiments(json.loads(dvc(repo, "exp", "show", "--json")))
    assert len(runs) == 2
    by_lr = {data["params"]["params.yaml"]["data"]["models"]["mlp"]["lr"]: data for data in runs.values()}
    assert set(by_lr) == {0.02, 0.2}
    accuracies = {lr: data["metrics"]["metrics/mlp.json"]["data"]["accuracy"] for lr, data in by_lr.items()}
    assert all(0.1 < a <= 1 for a in accuracies.values()) and accuracies[0.02] != accuracies[0.2]
    # the grid left the workspace as it was
    assert "up to date" in dvc(repo, "status")

    # make exps: one narrow row per run, with the changed lr and every model's test accuracy
    models = [*yaml.safe_load((repo / "params.yaml").read_text())["models"], "ensemble"]
    monkeypatch.setenv("COLUMNS", "1000")  # as wide as the table is, not squeezed to 80
    shown = make(repo, "exps")
    assert shown.returncode == 0, shown.stderr
    assert max(len(line.rstrip()) for line in shown.stdout.splitlines()) <= 160, shown.stdout
    header, rows = table(shown.stdout)
    assert header == [
        "Experiment",
        "State",
        *(f"{m}.acc" for m in models),
        "models.mlp.lr",
    ]  # the queue adds State
    grid = {
        row[-1]: row[1 + models.index("mlp")] for name, row in rows.items() if name.startswith(("├", "└"))
    }
    assert {row[0] for name, row in rows.items() if name.startswith(("├", "└"))} == {"Success"}
    assert grid == {str(lr): str(accuracies[lr]) for lr in (0.02, 0.2)}


def test_make_predict_prints_path_tab_digit_and_needs_images(repo: Path, tmp_path: Path) -> None:
    images, _ = load_split(repo / "data" / "processed" / "test.pt")
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(images[i].numpy()).save(paths[-1])
    model, info = load_model(repo / "models" / "mlp.pt")
    expected = [classify(model, info, load_image(p)[None], 1)[0][0] for p in paths]  # as predict does it
    predicted = make(repo, "predict", "MODEL=mlp", f"IMAGES={' '.join(map(str, paths))}")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines() == [
        f"{p}\t{d} ({prob:.3f})" for p, (d, prob) in zip(paths, expected, strict=True)
    ]

    empty = make(repo, "predict", "MODEL=mlp")
    assert empty.returncode == 2 and empty.stdout == ""
    assert empty.stderr.startswith('error: name the images: make predict MODEL=lenet IMAGES="a.png b.jpg"\n')


def test_pr_summary_includes_the_smoke_run(repo: Path) -> None:
    result = tool(repo, "report", "summary", "--base", "HEAD", "--smoke", str(repo))
    assert result.returncode == 0, result.stderr
    smoke = result.stdout.split("### Smoke run of this head", 1)[1]
    for name in ["ensemble", *yaml.safe_load((repo / "params.yaml").read_text())["models"]]:
        assert f"metrics/{name}.json" in smoke
    accuracy = json.loads((repo / "metrics" / "bnnet.json").read_text())["accuracy"]
    assert f"{accuracy}" in smoke
    assert "No params changed." in result.stdout
    # train and evaluate record machine and numerics: the summary says both sides compare bit for bit
    env = json.loads((repo / "metrics" / "env" / "train" / "bnnet.json").read_text())
    assert env["numerics"] == "portable"
    assert "### Environment: comparable bit for bit" in result.stdout
    assert f"- head: {env['cpu_model']} ({env['cpu_id']}), portable numerics" in result.stdout
