"""Adding a model, as the README says, on a copy of the smoke run: its module in architectures/, a params.yaml
block, a README row and `make dvc-yaml`; then only its own stages and the fan-in are stale, and `dvc repro`
trains, evaluates, summarises and plots it, offers it to the ensemble and rewrites no other model's files,
and the checks `make test` runs first pass. An edit to one architecture's module reruns only its models."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MNIST_DIR, dvc, make, stages_run, tool
from dvc.repo import Repo

from mnist_tools.smoke import EPOCHS, git

pytestmark = pytest.mark.e2e

NEW = "tinylin"  # a throwaway model, registered only in the copy
MODULE = f'''"""A test's throwaway model: one linear layer over the pixels."""

from __future__ import annotations

from torch import nn

from mnist_pipeline.architectures.shared import NUM_CLASSES, register_model


@register_model(
    "{NEW}",
    "one linear layer over the 784 pixels (a test's throwaway model)",
    ("mnist", "test"),
    parameters=784 * NUM_CLASSES + NUM_CLASSES,
)
def {NEW}() -> nn.Module:
    """The smallest model there is: a linear map from pixels to logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, NUM_CLASSES))
'''
RECIPE = {"arch": NEW, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": EPOCHS}
README_ROW = f"| `{NEW}` | — | one linear layer, 784 → 10 | 7,850 |"


def stale(repo: Path) -> set[str]:
    """The stages `dvc status` lists."""
    with Repo(str(repo)) as project:
        return {key.rsplit(":", 1)[-1] for key in project.status()}  # "<path>/dvc.yaml:<stage>"


def files_of(repo: Path, models: list[str]) -> dict[str, tuple[str, int, int]]:
    """(md5, inode, mtime in ns) of each model's own outputs: a stage that reran rewrote them (publish
    rewrites its copies in plots/ and metrics/ for every model, from these)."""
    found = {}
    for model in models:
        for pattern in (
            f"models/{model}.pt",
            f"data/logits/{model}.pt",
            f"data/training/{model}/history.csv",
            f"data/evaluation/{model}/metrics.json",
            f"data/evaluation/{model}/predictions.csv",
        ):
            path, stat = repo / pattern, (repo / pattern).stat()
            found[pattern] = (hashlib.md5(path.read_bytes()).hexdigest(), stat.st_ino, stat.st_mtime_ns)
    return found


def add_the_model(repo: Path) -> list[str]:
    """The copy's registry, params.yaml and README with the new model; the models it had before."""
    (repo / "src" / "mnist_pipeline" / "architectures" / f"{NEW}.py").write_text(MODULE)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    before = list(params["models"])
    params["models"][NEW] = RECIPE
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    readme = (repo / "README.md").read_text()
    last_row = re.findall(r"^\| `\w+` \|.*\| [\d,]+ \|$", readme.split("\n## Models\n", 1)[1], re.M)[-1]
    (repo / "README.md").write_text(readme.replace(last_row, f"{last_row}\n{README_ROW}", 1))
    return before


def test_a_new_model_is_trained_evaluated_summarised_plotted_and_offered_to_the_ensemble(repo: Path) -> None:
    before = add_the_model(repo)
    check = tool(repo, "dvcgen", "--check")
    assert (check.returncode, check.stdout) == (
        1,
        f"dvc.yaml is stale: run `make dvc-yaml` (models in params.yaml: {', '.join([*before, NEW])})\n",
    )
    assert tool(repo, "lockcheck").stdout == check.stdout  # what `make test` and `make check-lock` print
    written = make(repo, "dvc-yaml")
    assert written.returncode == 0, written.stdout + written.stderr
    # the new module is no other model's dep: only the new model's stages and the fan-in are stale (validate
    # too, as after any params.yaml edit, and its output does not change)
    fan_in = {"ensemble", "publish", "summary", "plot"}
    assert stale(repo) == {"validate", f"train@{NEW}", f"evaluate@{NEW}"} | fan_in
    others = files_of(repo, before)
    assert stages_run(dvc(repo, "repro")) == {
        "validate",
        f"train@{NEW}",
        f"evaluate@{NEW}",
        "ensemble",
        "publish",
        "summary",
        "plot",
    }
    assert files_of(repo, before) == others  # not rewritten: the same bytes, inodes and mtimes
    models = [*before, NEW]
    assert 0.1 < json.loads((repo / "metrics" / f"{NEW}.json").read_text())["accuracy"] <= 1
    assert list(json.loads((repo / "metrics" / "summary.json").read_text())) == [*models, "ensemble"]
    ensemble = json.loads((repo / "metrics" / "ensemble.json").read_text())
    assert ensemble["candidates"] == sorted(models)
    assert f"| {NEW} |" in (repo / "plots" / "leaderboard.md").read_text()
    figures = {p.name for p in (repo / "plots" / "figures").glob("*.png")}
    assert {f"confusion_{NEW}.png", f"mistakes_{NEW}.png"} <= figures

    shown = json.loads(dvc(repo, "plots", "show", "--json"))
    assert not shown.get("errors")
    for plot_id, plots in shown["data"].items():
        if plots[0]["type"] != "image":  # each chart draws every model's CSV
            values = plots[0]["content"]["data"]["values"]
            files = {row.get("filename") or row["filename::field"].split("::")[0] for row in values}
            assert f"{NEW}.csv" in files, plot_id
    assert f"plots/figures/mistakes_{NEW}.png" in shown["data"]
    with Repo(str(repo)) as project:
        artifact = project.artifacts.read()["dvc.yaml"][NEW]
    assert (artifact.path, artifact.desc, artifact.labels) == (
        f"models/{NEW}.pt",
        "one linear layer over the 784 pixels (a test's throwaway model)",
        ["mnist", "test"],
    )

    # what `make test` checks before the suite, on the committed result
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"add {NEW}")
    assert tool(repo, "dvcgen", "--check").returncode == 0
    lock = tool(repo, "lockcheck")
    assert lock.returncode == 0, lock.stdout + lock.stderr
    ruff = Path(sys.executable).parent / "ruff"  # the builder as written here passes `make lint`
    for check in (["check"], ["format", "--check"]):
        linted = subprocess.run(
            [ruff, *check, f"src/mnist_pipeline/architectures/{NEW}.py"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr
    # and the unit tests that derive their lists from params.yaml and the registry, unchanged
    env = os.environ | {"PYTHONPATH": str(repo / "src"), "MNIST_DIR": str(MNIST_DIR)}
    tests = ["tests/unit/test_dvc_yaml.py", "tests/unit/test_dvc_deps.py", "tests/unit/test_models.py"]
    unit = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *tests],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout[-3000:]


def test_an_edit_to_one_architecture_reruns_only_the_models_built_from_it(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())["models"]
    arch = params["mlp"]["arch"]  # the quickest to retrain
    built = {name for name, recipe in params.items() if recipe["arch"] == arch}
    module = repo / "src" / "mnist_pipeline" / "architectures" / f"{arch}.py"
    module.write_text(module.read_text().replace('"""', '"""An edited docstring. ', 1))
    assert stale(repo) == {f"{stage}@{name}" for stage in ("train", "evaluate") for name in built}
    others = files_of(repo, [name for name in params if name not in built])
    ran = stages_run(dvc(repo, "repro"))
    assert {f"{stage}@{name}" for stage in ("train", "evaluate") for name in built} <= ran
    assert not {s for s in ran if s.partition("@")[2] and s.partition("@")[2] not in built}
    assert files_of(repo, [name for name in params if name not in built]) == others
