"""The README's everyday commands on a real smoke run:
experiments through the queue, make predict, the PR summary."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import dvc, make, markdown_table, tool
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


def test_a_queued_grid_runs_its_own_code_and_exp_show_compares_it(repo: Path) -> None:
    # up to summary, which `make exps` reads: the figures (plot) add nothing to the comparison
    dvc(repo, "exp", "run", "--queue", "-S", "models.mlp.lr=0.02,0.2", "summary")
    # Then the workspace's core changes, and breaks. An editable install puts the workspace's src/ on
    # every interpreter's path (here PYTHONPATH, as the venv's .pth file would): the queued runs must
    # still import the src/ of their own snapshot, the code their dvc.lock records.
    training = repo / "src" / "mnist_pipeline" / "training.py"
    original = training.read_text()
    training.write_text(original + '\nraise RuntimeError("the workspace\'s edited code ran")\n')
    env = os.environ | {"PYTHONPATH": str(repo / "src")}
    try:
        # one worker: a stage already uses both cores (train.threads: 2); two would only share them
        subprocess.run(
            ["dvc", "queue", "start", "-j", "1"], cwd=repo, env=env, check=True, capture_output=True
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = dvc(repo, "queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(5)  # each check is a DVC process, on the cores the experiment trains on
    finally:
        training.write_text(original)
    assert status.count("Success") == 2, status
    runs = experiments(json.loads(dvc(repo, "exp", "show", "--json")))
    assert len(runs) == 2
    by_lr = {data["params"]["params.yaml"]["data"]["models"]["mlp"]["lr"]: data for data in runs.values()}
    assert set(by_lr) == {0.02, 0.2}
    accuracies = {lr: data["metrics"]["metrics/mlp.json"]["data"]["accuracy"] for lr, data in by_lr.items()}
    assert all(0.1 < a <= 1 for a in accuracies.values()) and accuracies[0.02] != accuracies[0.2]
    # the grid left the workspace as it was
    assert "up to date" in dvc(repo, "status")

    # make exps: a Markdown table, one row per run: Experiment and State (the queue adds it), the changed lr,
    # then every model's test accuracy
    models = [*yaml.safe_load((repo / "params.yaml").read_text())["models"], "ensemble"]
    shown = make(repo, "exps")  # a pipe: dvc's own table would be cut to 80 columns here
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert len({len(line) for line in lines}) == 1, shown.stdout  # aligned, no row cut
    # the columns after the experiment names (dvc generates those, of any length): 130 characters, six models
    assert len(lines[0]) - len(lines[0].split("|")[1]) <= 140, shown.stdout
    header, rows = markdown_table(shown.stdout)
    assert header == ["Experiment", "State", "models.mlp.lr", *(f"{m}.acc" for m in models)]
    runs = {name: row for name, row in rows.items() if name.startswith(("├", "└"))}
    assert {row[0] for row in runs.values()} == {"Success"}
    grid = {row[1]: row[2 + models.index("mlp")] for row in runs.values()}
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
