"""The real DVC CLI on the smoke profile in a temporary git repo holding a copy of the project."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import dvc, stages_run, tool
from dvc.repo import Repo

from mnist_pipeline.models import MODELS
from mnist_tools.smoke import KEEP_SHIFTS, git

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# the tutorials' models: their registry cards carry a tutorial-NNN label (ours is "ours")
TUTORIAL_MODELS = [
    name
    for name, recipe in yaml.safe_load((ROOT / "params.yaml").read_text())["models"].items()
    if any(label.startswith("tutorial-") for label in MODELS[recipe["arch"]].labels)
]


def digests(repo: Path, patterns: list[str]) -> dict[str, str]:
    return {
        str(p.relative_to(repo)): hashlib.md5(p.read_bytes()).hexdigest()
        for pattern in patterns
        for p in sorted(repo.glob(pattern))
    }


def set_param(repo: Path, model: str, key: str, value: object) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["models"][model][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def all_stages(repo: Path) -> set[str]:
    return {line.split()[0] for line in dvc(repo, "stage", "list").splitlines() if line.strip()}


def test_smoke_ran_every_stage(template: Path) -> None:
    lock = yaml.safe_load((template / "dvc.lock").read_text())
    names = all_stages(template)
    models = all_models(template)
    assert len(TUTORIAL_MODELS) == 5 and set(models) >= set(TUTORIAL_MODELS) | {"bnnet"}
    assert set(lock["stages"]) == names
    assert names == {"validate", "download", "preprocess", "ensemble", "publish", "summary", "plot"} | {
        f"{stage}@{m}" for stage in ("train", "evaluate") for m in models
    }
    summary = json.loads((template / "metrics" / "summary.json").read_text())
    assert list(summary) == [*models, "ensemble"]
    for name in [*models, "ensemble"]:
        metrics = json.loads((template / "metrics" / f"{name}.json").read_text())
        assert 0.1 < metrics["accuracy"] <= 1 and len(metrics["confusion_matrix"]) == 10
        assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
        assert set(metrics["per_class_accuracy"]) == {str(d) for d in range(10)}
        assert summary[name]["acc"] == metrics["accuracy"] and summary[name]["loss"] == round(
            metrics["loss"], 4
        )
    for model in models:
        assert (template / "models" / f"{model}.pt").exists()
        for stage in ("train", "evaluate"):
            env = json.loads((template / "metrics" / "env" / stage / f"{model}.json").read_text())
            assert env["device"] and env["torch"] and env["cpu_model"]
    figures = {p.name for p in (template / "plots" / "figures").glob("*.png")}
    assert figures == {
        "val_accuracy.png",
        "per_class_error.png",
        "prediction_grid.png",
        *(f"confusion_{m}.png" for m in [*models, "ensemble"]),
        *(f"mistakes_{m}.png" for m in models),
    }
    assert all((template / "plots" / "figures" / f).read_bytes().startswith(b"\x89PNG") for f in figures)


def test_the_ensemble_is_chosen_on_val_and_each_model_scored_as_its_file_says(template: Path) -> None:
    import torch

    from mnist_pipeline.artifacts import ModelFile

    models = all_models(template)
    chosen = json.loads((template / "models" / "ensemble.json").read_text())
    metrics = json.loads((template / "metrics" / "ensemble.json").read_text())
    assert chosen["members"] == metrics["members"] and set(chosen["members"]) <= set(models)
    assert sum(chosen["members"].values()) == pytest.approx(1.0, abs=1e-5)
    assert metrics["candidates"] == sorted(models)
    best = max(json.loads((template / "metrics" / f"{m}.json").read_text())["val_accuracy"] for m in models)
    assert metrics["best_member_val_accuracy"] == best
    assert metrics["val_errors"] == round((1 - metrics["val_accuracy"]) * 1000)
    # the rule used made no more out-of-fold val errors than the other; Caruana only with strictly fewer
    ours, theirs = metrics["cv_val_errors"], metrics["alternative"]["cv_val_errors"]
    rules = {metrics["rule"], metrics["alternative"]["rule"]}
    assert rules == {"caruana", "near-best average"}
    assert ours < theirs if metrics["rule"] == "caruana" else ours <= theirs
    assert metrics["why"].startswith(f"{ours} out-of-fold val errors against {theirs}")
    assert (chosen["rule"], chosen["why"]) == (metrics["rule"], metrics["why"])  # one meaning per key
    assert chosen["rounds"][0] == {
        "added": metrics["best_member"],
        "val_accuracy": best,
        "val_loss": chosen["rounds"][0]["val_loss"],
    }
    for model in models:
        record = ModelFile.load(template / "models" / f"{model}.pt")
        scored = json.loads((template / "metrics" / f"{model}.json").read_text())
        assert scored["test_shifts"] is record.test_shifts
        # the smoke profile turns test-time shifts off but for one model, whose recipe says auto
        assert set(record.val_scores) == ({"plain", "shifted"} if model == KEEP_SHIFTS else {"plain"})
        mode = "shifted" if record.test_shifts else "plain"
        assert scored["val_accuracy"] == round(record.val_scores[mode]["accuracy"], 6)
        logits = torch.load(template / "data" / "logits" / f"{model}.pt", weights_only=True)
        assert logits["val"].shape == (1000, 10) and logits["test"].shape == (10_000, 10)


def test_make_smoke_leaves_the_workspace_untouched(smoke_run) -> None:
    assert smoke_run.changed_in_workspace == []


def test_leaderboard_ranks_every_model_and_the_ensemble_by_test_accuracy(template: Path) -> None:
    board = list(csv.DictReader((template / "plots" / "leaderboard.csv").open()))
    assert {row["model"] for row in board} == {*all_models(template), "ensemble"}
    accuracies = [float(row["test_accuracy"]) for row in board]
    assert accuracies == sorted(accuracies, reverse=True)
    for row in board:
        metrics = json.loads((template / "metrics" / f"{row['model']}.json").read_text())
        assert float(row["test_accuracy"]) == metrics["accuracy"]
        worst = min(metrics["per_class_accuracy"].values())
        assert float(row["worst_class_accuracy"]) == worst
        assert metrics["per_class_accuracy"][row["worst_class"]] == worst
    markdown = (template / "plots" / "leaderboard.md").read_text().splitlines()
    assert [line.split(" | ")[0].lstrip("| ") for line in markdown[2:]] == [row["model"] for row in board]


def test_status_clean_and_second_repro_runs_nothing(repo: Path) -> None:
    assert "Data and pipelines are up to date" in dvc(repo, "status")
    assert stages_run(dvc(repo, "repro")) == set()


def test_forced_rerun_is_byte_identical_and_verify_hashes_it_so(repo: Path) -> None:
    # Every model retrained in fresh processes, and resnet18 (SmallMapConv2d) scored again, must give the same
    # bytes. The other stages are pure functions of those outputs: DVC itself then shows which inputs came
    # back unchanged, as only the timing files (metrics/timing/, plots/train/'s seconds column) may differ.
    patterns = ["metrics/*.json", "models/*.pt", "plots/predictions/*.csv", "plots/per_class/*.csv"]
    before = digests(repo, patterns)
    forced = {stage for stage in all_stages(repo) if stage.startswith("train@")} | {"evaluate@resnet18"}
    assert stages_run(dvc(repo, "repro", "-f", "-s", *sorted(forced))) == forced
    assert digests(repo, patterns) == before
    # same models: no evaluate@* is stale; same test logits: nor is the ensemble; new seconds in the
    # histories and inference timings: publish copies them, and plot draws them; the same metrics: summary
    # is not stale (no wall-clock seconds in it)
    assert stages_run(dvc(repo, "repro")) == {"publish", "plot"}
    assert digests(repo, patterns) == before
    assert (
        git(
            repo,
            "status",
            "--porcelain",
            "--",
            ":(glob)metrics/*.json",
            "plots/predictions",
            "plots/per_class",
        )
        == ""
    )
    # make verify hashes every output of the rerun against the committed dvc.lock's
    verified = tool(repo, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = verified.stdout.splitlines()
    assert "matches  models/lenet.pt  (train@lenet)" in lines
    assert "matches  data/logits/mlp.pt  (evaluate@mlp)" in lines
    assert "matches  metrics/ensemble.json  (ensemble)" in lines
    assert "matches  data/raw  (download)" in lines  # a folder: its .dir digest, computed here
    assert "  data/training/lenet  (train@lenet)" in lines  # listed apart, never compared
    assert "  plots/train  (publish)" in lines
    compared = [line for line in lines[: lines.index("")]]
    assert lines[-1] == (
        f"{len(compared)} of {len(compared)} outputs match main's dvc.lock bit for bit, each file hashed now"
    )


def test_verify_names_a_model_that_differs_from_the_commit_and_a_missing_one(repo: Path) -> None:
    # a commit whose lenet came out otherwise (another CPU, say): this workspace does not hold its bytes
    lock = (repo / "dvc.lock").read_text()
    md5 = hashlib.md5((repo / "models" / "lenet.pt").read_bytes()).hexdigest()
    (repo / "dvc.lock").write_text(lock.replace(md5, "f" * 32))
    git(repo, "commit", "-q", "-am", "lenet from elsewhere")
    (repo / "dvc.lock").write_text(lock)
    differs = tool(repo, "verify")
    assert differs.returncode == 1
    at = differs.stdout.splitlines().index("differs  models/lenet.pt  (train@lenet)")
    assert differs.stdout.splitlines()[at + 1] == (
        f"         md5 {md5} here, {'f' * 32} in main's dvc.lock: the run recorded in this workspace's "
        "dvc.lock made other bytes"
    )
    assert differs.stdout.splitlines()[-1].endswith(", each file hashed now; 1 does not: models/lenet.pt")
    # a missing output is named, with where to get it
    (repo / "models" / "mlp.pt").unlink()
    missing = tool(repo, "verify", "--rev", "HEAD~1")
    assert missing.returncode == 1
    assert "missing  models/mlp.pt  (train@mlp)" in missing.stdout.splitlines()
    assert missing.stdout.splitlines()[-2:] == [
        missing.stdout.splitlines()[-2].split(";")[0] + "; 1 does not: models/mlp.pt",
        "get the missing ones with `make pull` (the team's DVC remote) or `make repro`",
    ]


CHARTS = {  # plot id in dvc.yaml → the folder whose per-model CSVs it combines
    "Validation accuracy per epoch, every model": "train",
    "Loss per epoch, train vs validation": "train",
    "Accuracy per epoch, train vs validation": "train",
    "Test error rate per digit (%)": "per_class",
    "Test mistakes, actual vs predicted (correct answers left out)": "predictions",
}


def test_plots_show_draws_a_few_charts_that_each_compare_every_model(repo: Path) -> None:
    shown = json.loads(dvc(repo, "plots", "show", "--json"))
    assert not shown.get("errors")
    models = all_models(repo)
    mistakes = [f"plots/figures/mistakes_{m}.png" for m in models]
    assert list(shown["data"]) == [*CHARTS, *mistakes] and len(shown["data"]) <= 12
    for plot_id, folder in CHARTS.items():
        files = {
            row["filename"] if "filename" in row else row["filename::field"].split("::")[0]
            for row in shown["data"][plot_id][0]["content"]["data"]["values"]
        }
        expected = {f"{m}.csv" for m in models} | ({"ensemble.csv"} if folder == "predictions" else set())
        assert files == expected, plot_id
    for png in mistakes:
        assert (repo / png).is_file() and shown["data"][png][0]["type"] == "image"


def all_models(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "params.yaml").read_text())["models"])


def test_sigkill_mid_training_resumes_to_identical_weights(repo: Path) -> None:
    # mlp (BatchNorm, augmentation, one-cycle SGD with momentum): 10 short epochs (~0.2 s each on the smoke
    # split), so the kill, sent within 20 ms of the first checkpoint, lands mid-run
    epochs = 10
    set_param(repo, "mlp", "epochs", epochs)
    checkpoint = repo / "checkpoints" / "mlp.pt"
    proc = subprocess.Popen(
        ["dvc", "repro", "train@mlp"],
        cwd=repo,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), "no checkpoint after the first epoch"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    output = dvc(repo, "repro", "train@mlp")
    restored = re.findall(r"mlp epoch +(\d+) .*\(restored\)", output)
    assert "mlp: resuming from checkpoints/mlp.pt" in output, output
    assert 1 <= len(restored) < epochs and restored == [str(e) for e in range(1, len(restored) + 1)], output
    assert not checkpoint.exists()
    resumed = digests(repo, ["models/mlp.pt"])
    dvc(repo, "repro", "-f", "train@mlp")
    assert digests(repo, ["models/mlp.pt"]) == resumed


def test_dvc_reruns_exactly_the_stages_whose_deps_name_an_edited_module(repo: Path) -> None:
    # test_dvc_deps checks every module against every stage's imports in seconds; this checks that DVC
    # acts on those deps: an edit to the code every architecture imports (architectures/shared.py, and
    # smallconv.py through it) makes train@* and evaluate@* stale and nothing else, an edit to summary.py
    # only the summary stage.
    assert "up to date" in dvc(repo, "status")
    models = all_models(repo)
    every_model = {f"{s}@{m}" for s in ("train", "evaluate") for m in models}
    for module, expected in (
        ("architectures/shared", every_model),
        ("smallconv", every_model),
        ("summary", {"summary"}),
    ):
        path = repo / "src" / "mnist_pipeline" / f"{module}.py"
        original = path.read_bytes()
        path.write_bytes(original + b"\n# touched by the dependency test\n")
        try:
            with Repo(str(repo)) as project:
                changed = {key.rsplit(":", 1)[-1] for key in project.status()}  # "<path>/dvc.yaml:<stage>"
        finally:
            path.write_bytes(original)
        assert changed == expected, module


TEMPLATE = ROOT / ".venv" / "share" / "dvc-plots-offline.html"


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def render_in_browser(page: Path, profile: Path) -> tuple[str, str]:
    """The DOM of a local page after its scripts ran in headless Chromium, and the browser's log."""
    result = subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout, result.stderr


def drawn_labels(dom: str, mark: str) -> list[dict[str, str]]:
    """The aria-labels of every SVG `mark` ("text", "rect", ...) vega drew, as field → value."""
    labels = re.findall(
        rf'<(?:text|path)[^>]*aria-label="([^"]*)"[^>]*aria-roledescription="{mark} mark"', dom
    )
    return [dict(part.split(": ", 1) for part in label.split("; ")) for label in labels]


@pytest.mark.parametrize("command", [["plots", "show"], ["plots", "diff", "HEAD"]])
def test_plots_render_offline_in_a_real_browser(repo: Path, tmp_path: Path, command: list[str]) -> None:
    if browser() is None:
        pytest.skip("no Chromium: `make install-test` installs it with apt-get when run as root on Debian")
    assert TEMPLATE.is_file(), "run `make install` to build the offline plots template"
    dvc(repo, *command, "-o", str(tmp_path / "out"), "--html-template", str(TEMPLATE))
    page = tmp_path / "out" / "index.html"
    html = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]*\s(src|href)=[\"']?https?:", html), (
        "the page loads something from the network"
    )
    plots = html.count("vegaEmbed('#")
    assert plots == len(CHARTS)
    dom, log = render_in_browser(page, tmp_path / "profile")
    rendered = dom.count('class="marks"')  # vega-embed draws each plot into an svg of class "marks"
    assert rendered == plots, f"{rendered} of {plots} plots rendered"
    errors = [
        line for line in log.splitlines() if "Uncaught" in line or "CONSOLE" in line and "Error" in line
    ]
    assert not errors

    # What the charts show, read back from the SVG, equals what the CSVs hold (HEAD holds the project's
    # committed full-run CSVs, the workspace the smoke run's).
    models = all_models(repo)
    revisions = ["workspace"] if command == ["plots", "show"] else ["HEAD", "workspace"]
    texts = drawn_labels(dom, "text")
    panel = {
        (m, rev): m if len(revisions) == 1 else f"{m} · {rev}"
        for m in models + ["ensemble"]
        for rev in revisions
    }
    for rev in revisions:

        def rows(path: str, rev: str = rev) -> list[dict[str, str]]:
            text = (repo / path).read_text() if rev == "workspace" else git(repo, "show", f"HEAD:{path}")
            return list(csv.DictReader(text.splitlines()))

        for m in models:
            per_class = rows(f"plots/per_class/{m}.csv")
            shown = {
                t["digit"]: t["error %"] for t in texts if t.get("model") == panel[m, rev] and "error %" in t
            }
            assert shown == {r["digit"]: f"{100 * (1 - float(r['accuracy'])):.2f}" for r in per_class}, (
                m,
                rev,
            )
        for m in models + ["ensemble"]:
            pairs = [(r["actual"], r["predicted"]) for r in rows(f"plots/predictions/{m}.csv")]
            wrong = {pair: pairs.count(pair) for pair in set(pairs) if pair[0] != pair[1]}
            shown = {
                (t["actual"], t["predicted"]): int(t["errors"])
                for t in texts
                if t.get("model") == panel[m, rev] and "errors" in t
            }
            assert shown == wrong, (m, rev)
    lines = drawn_labels(dom, "line")
    assert {t.get("model") for t in lines} >= set(models)
