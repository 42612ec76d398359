"""`make repro JOBS=N` and the relay across machines, on the smoke run: each ends in the dvc.lock that a
serial `dvc repro` of the same change writes, with every chain restored from DVC's run cache."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import clone, dvc, make, set_lr

from mnist_tools.smoke import git
from mnist_tools.verify import is_timed

pytestmark = pytest.mark.e2e

CHANGED = {"mlp": 0.05, "cnn6": 0.05}  # the two cheapest chains, made stale by a new lr each
CHAINS = [f"{stage}@{model}" for model in CHANGED for stage in ("train", "evaluate")]


def change(repo: Path) -> None:
    for model, lr in CHANGED.items():
        set_lr(repo, model, lr)


def timed(path: str) -> bool:
    """Whether path is, or lies inside, an output that holds seconds or the machine's name (make verify)."""
    return any(is_timed(str(p)) for p in [Path(path), *Path(path).parents])


def lock_view(repo: Path) -> list[tuple[str, dict]]:
    """dvc.lock's stages in order, each with its command, params, and deps and outs by path and md5; the
    md5 and size of the timed files left out."""

    def files(entries: list[dict]) -> list[tuple[str, str | None]]:
        return [(e["path"], None if timed(e["path"]) else e["md5"]) for e in entries]

    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    view = []
    for name, stage in stages.items():
        kept = {"cmd": stage["cmd"], "params": stage.get("params")}
        view.append((name, kept | {"deps": files(stage["deps"]), "outs": files(stage["outs"])}))
    return view


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


@pytest.fixture(scope="module")
def serial(smoke_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The smoke run with CHANGED applied and an ordinary serial `dvc repro` run: the reference."""
    path = tmp_path_factory.mktemp("serial") / "project"
    shutil.copytree(smoke_run.path, path, symlinks=True)
    change(path)
    dvc(path, "repro")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_repro_jobs_2_writes_a_serial_runs_lock_and_a_failed_chain_loses_nothing(
    repo: Path, serial: Path
) -> None:
    change(repo)
    module = repo / "src" / "mnist_pipeline" / "architectures" / "mlp.py"
    good = module.read_text()
    # building an MLP fails: only mlp's train stage builds one (dvcgen and validate read its card)
    broken = good.replace("super().__init__()\n", "raise RuntimeError('a broken mlp module')\n", 1)
    assert broken != good
    module.write_text(broken)
    before = {p: md5(repo / p) for p in ("models/mlp.pt", "models/cnn6.pt", "metrics/mlp.json")}

    failed = make(repo, "repro", "JOBS=2")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: the chain of mlp failed (its log: `dvc queue logs ")
    assert "chain cnn6: done in" in failed.stdout and "chain mlp: FAILED in" in failed.stdout
    log = re.search(r"`(dvc queue logs [\w-]+)`", errors[0])[1].split()
    assert "a broken mlp module" in dvc(repo, *log[1:])
    assert {p: md5(repo / p) for p in before} == before  # the workspace's results are as they were

    module.write_text(good)
    done = make(repo, "repro", "JOBS=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running the chains of mlp, cnn6, 2 at a time" in done.stdout
    assert restored(done.stdout) == set(CHAINS)  # the final serial repro ran none of them
    assert lock_view(repo) == lock_view(serial)
    assert "Data and pipelines are up to date" in dvc(repo, "status")  # and the files are what the lock says
    assert dvc(repo, "exp", "list").strip() == ""  # no helper experiment is left

    # The run cache's side effect: going back to a setting already run restores it instead of retraining.
    git(repo, "checkout", "--", "params.yaml")
    back = dvc(repo, "repro", "train@mlp", "evaluate@mlp")
    assert restored(back) == {"train@mlp", "evaluate@mlp"}
    assert md5(repo / "models/mlp.pt") == before["models/mlp.pt"]


def test_a_relay_between_two_clones_sharing_only_a_remote_writes_a_serial_runs_lock(
    repo: Path, serial: Path, tmp_path: Path
) -> None:
    dvc(repo, "remote", "add", "-d", "team", str(tmp_path / "storage"))
    dvc(repo, "push")  # the team's remote holds main's results
    change(repo)
    git(repo, "commit", "-q", "-am", "two new learning rates, and the team's DVC remote")

    for model in CHANGED:  # one machine per model: a fresh clone, its own cache, only the remote shared
        machine = clone(repo, tmp_path / model)
        relayed = make(machine, "relay", f"MODELS={model}")
        assert relayed.returncode == 0, relayed.stdout + relayed.stderr

    last = clone(repo, tmp_path / "last")
    assembled = dvc(last, "repro", "--pull")
    assert restored(assembled) == set(CHAINS)
    assert lock_view(last) == lock_view(serial)
    assert "Data and pipelines are up to date" in dvc(last, "status")
