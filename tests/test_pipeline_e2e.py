"""The real DVC CLI on the smoke profile in a temporary git repo holding a copy of the project."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import dvc
from mnist_pipeline.smoke import git

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SEED_MODELS = ["resnet18", "mlp", "lenet", "cnn6", "cnn2"]


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def digests(repo: Path, patterns: list[str]) -> dict[str, str]:
    return {str(p.relative_to(repo)): hashlib.md5(p.read_bytes()).hexdigest()
            for pattern in patterns for p in sorted(repo.glob(pattern))}


def set_param(repo: Path, model: str, key: str, value: object) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["models"][model][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def all_stages(repo: Path) -> set[str]:
    return {line.split()[0] for line in dvc(repo, "stage", "list").splitlines() if line.strip()}


def test_smoke_ran_every_stage(repo: Path) -> None:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    names = all_stages(repo)
    assert set(lock["stages"]) == names
    assert {f"train@{m}" for m in SEED_MODELS} | {f"evaluate@{m}" for m in SEED_MODELS} <= names
    for model in SEED_MODELS:
        metrics = json.loads((repo / "metrics" / f"{model}.json").read_text())
        assert 0.1 < metrics["accuracy"] <= 1 and len(metrics["confusion_matrix"]) == 10
        assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
        assert (repo / "models" / f"{model}.pt").exists()
    assert (repo / "plots" / "figures" / "training_curves.png").exists()


def test_status_clean_and_second_repro_runs_nothing(repo: Path) -> None:
    assert "Data and pipelines are up to date" in dvc(repo, "status")
    assert stages_run(dvc(repo, "repro")) == set()


def test_forced_rerun_is_byte_identical(repo: Path) -> None:
    patterns = ["metrics/*.json", "models/*.pt", "plots/predictions/*.csv", "plots/per_class/*.csv"]
    before = digests(repo, patterns)
    output = dvc(repo, "repro", "-f")
    assert stages_run(output) == all_stages(repo)
    assert digests(repo, patterns) == before
    # Only the timing files (metrics/timing/, the seconds column of plots/train/) may differ.
    assert git(repo, "status", "--porcelain", "--", ":(glob)metrics/*.json", "plots/predictions", "plots/per_class") == ""


def test_changing_one_lr_reruns_only_that_model(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "tune-lenet")
    old_lr = yaml.safe_load((repo / "params.yaml").read_text())["models"]["lenet"]["lr"]
    new_lr = old_lr / 2
    set_param(repo, "lenet", "lr", new_lr)
    assert stages_run(dvc(repo, "repro")) == {"train@lenet", "evaluate@lenet", "ensemble", "plot"}
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lenet: half the lr")
    params_diff = json.loads(dvc(repo, "params", "diff", "main", "--json"))
    assert params_diff == {"params.yaml": {"models.lenet.lr": {"old": old_lr, "new": new_lr, "diff": new_lr - old_lr}}}
    metrics_diff = json.loads(dvc(repo, "metrics", "diff", "main", "--json"))
    assert "accuracy" in metrics_diff["metrics/lenet.json"]
    assert not {f"metrics/{m}.json" for m in SEED_MODELS if m != "lenet"} & set(metrics_diff)
    git(repo, "checkout", "-q", "main")
    dvc(repo, "checkout")
    assert "up to date" in dvc(repo, "status")


def test_plots_show_writes_every_plot_id(repo: Path, tmp_path: Path) -> None:
    dvc(repo, "plots", "show", "-o", str(tmp_path))
    html = (tmp_path / "index.html").read_text()
    names = [*all_models(repo)]
    expected = [f"plots/{kind}/{m}.csv" for m in names for kind in ("train", "predictions", "per_class")]
    expected += ["plots/predictions/ensemble.csv"]
    expected += [str(p.relative_to(repo)) for p in (repo / "plots" / "figures").glob("*.png")]
    assert len(expected) > 3 * len(names)
    missing = [plot_id for plot_id in expected if plot_id not in html]
    assert not missing


def all_models(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "params.yaml").read_text())["models"])


def test_sigkill_mid_training_resumes_to_identical_weights(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "resume")
    set_param(repo, "resnet18", "epochs", 3)
    checkpoint = repo / "checkpoints" / "resnet18.pt"
    proc = subprocess.Popen(["dvc", "repro", "train@resnet18"], cwd=repo, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "no checkpoint after the first epoch"
    os.killpg(proc.pid, signal.SIGKILL)  # in the middle of epoch 2
    proc.wait()
    output = dvc(repo, "repro", "train@resnet18")
    assert "resumed after epoch 1" in output
    assert not checkpoint.exists()
    resumed = digests(repo, ["models/resnet18.pt"])
    dvc(repo, "repro", "-f", "train@resnet18")
    assert digests(repo, ["models/resnet18.pt"]) == resumed
    git(repo, "checkout", "-q", "-f", "main")  # drop the uncommitted params, dvc.lock and CSV changes
    dvc(repo, "checkout", "--force")


STAGE_SCRIPTS = {"download": "download", "preprocess": "preprocess", "train": "train", "evaluate": "evaluate",
                 "ensemble": "ensemble", "plot": "plot"}


def imported_modules(repo: Path, script: str) -> set[str]:
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('stage', 'stages/{script}.py'); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "print(' '.join(m.split('.')[1] for m in sys.modules if m.startswith('mnist_pipeline.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_stage_dependencies_match_imports(repo: Path) -> None:
    assert "up to date" in dvc(repo, "status")
    imports = {stage: imported_modules(repo, script) for stage, script in STAGE_SCRIPTS.items()}
    for module in sorted((repo / "src" / "mnist_pipeline").glob("*.py")):
        if module.stem == "__init__":
            # Imported by every stage but listed in no deps: it must stay a bare docstring.
            body = ast.parse(module.read_text()).body
            assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            continue
        original = module.read_bytes()
        module.write_bytes(original + b"\n# touched by the dependency test\n")
        try:
            changed = set(json.loads(dvc(repo, "status", "--json")))
        finally:
            module.write_bytes(original)
        expected = {name for name in all_stages(repo) if module.stem in imports[name.split("@")[0]]}
        assert changed == expected, f"{module.name}: dvc marks {sorted(changed)}, importers are {sorted(expected)}"


TEMPLATE = ROOT / ".venv" / "share" / "dvc-plots-offline.html"


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def render_in_browser(page: Path, profile: Path) -> tuple[str, str]:
    """The DOM of a local page after its scripts ran in headless Chromium, and the browser's log."""
    result = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    return result.stdout, result.stderr


@pytest.mark.parametrize("command", [["plots", "show"], ["plots", "diff", "HEAD"]])
def test_plots_render_offline_in_a_real_browser(repo: Path, tmp_path: Path, command: list[str]) -> None:
    if browser() is None:
        pytest.skip("no Chromium: `make install` installs it with apt-get when run as root on Debian")
    assert TEMPLATE.is_file(), "run `make install` to build the offline plots template"
    dvc(repo, *command, "-o", str(tmp_path / "out"), "--html-template", str(TEMPLATE))
    page = tmp_path / "out" / "index.html"
    html = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]*\s(src|href)=[\"']?https?:", html), "the page loads something from the network"
    plots = html.count("vegaEmbed('#")
    assert plots >= 10
    dom, log = render_in_browser(page, tmp_path / "profile")
    rendered = dom.count('class="marks"')  # vega-embed draws each plot into a canvas/svg of class "marks"
    assert rendered == plots, f"{rendered} of {plots} plots rendered"
    errors = [line for line in log.splitlines() if "Uncaught" in line or "CONSOLE" in line and "Error" in line]
    assert not errors
