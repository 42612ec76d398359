"""`make repro JOBS=N` and the relay across machines, on the smoke run: each ends in the dvc.lock that a
serial `dvc repro` of the same change writes, with every chain restored from DVC's run cache."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import clone, dvc, make, set_lr, stages_run, tool

from mnist_tools.smoke import git
from mnist_tools.verify import is_timed

# make test (pytest-xdist --dist loadfile) runs a file on one worker: these share the serial reference
pytestmark = pytest.mark.e2e

CHANGED = {"mlp": 0.05, "cnn6": 0.05}  # the two cheapest chains, made stale by a new lr each
CHAINS = [f"{stage}@{model}" for model in CHANGED for stage in ("train", "evaluate")]
FRESH = "cnn2"  # a model left unchanged, as a fresh clone has it (as_in_a_fresh_clone)


def change(repo: Path) -> dict[str, float]:
    """Set CHANGED's lrs in repo's params.yaml; return the old ones."""
    return {model: set_lr(repo, model, lr) for model, lr in CHANGED.items()}


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


def as_in_a_fresh_clone(repo: Path, model: str) -> None:
    """Leave model's chain as a fresh clone has it: params and deps as dvc.lock says, but its outputs, their
    cache objects and its run-cache entries gone. Objects another stage's outputs share (the machine
    records of one machine are the same bytes) stay, as another clone's run would bring them back; so do
    the other stages' run-cache entries."""
    cache = repo / ".dvc" / "cache" / "files" / "md5"
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]

    def objects(names: list[str]) -> set[str]:
        """The md5s of these stages' outputs, and of every file a folder output lists."""
        md5s = set()
        for name in names:
            for out in stages[name].get("outs", []):
                md5s.add(out["md5"])
                listing = cache / out["md5"][:2] / out["md5"][2:]
                if (
                    out["md5"].endswith(".dir") and listing.is_file()
                ):  # git's folders (publish's) are not cached
                    md5s |= {entry["md5"] for entry in json.loads(listing.read_text())}
        return md5s

    chain = [f"train@{model}", f"evaluate@{model}"]
    gone = objects(chain) - objects([name for name in stages if name not in chain])
    for name in chain:
        for out in stages[name]["outs"]:
            path = repo / out["path"]
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    for md5 in gone:
        (cache / md5[:2] / md5[2:]).unlink(missing_ok=True)
    commands = {stages[name]["cmd"] for name in chain}
    for entry in (repo / ".dvc" / "cache" / "runs").glob("*/*/*"):
        if yaml.safe_load(entry.read_text())["cmd"] in commands:
            entry.unlink()


@dataclass(frozen=True)
class Reference:
    """The smoke run with CHANGED applied on a branch, then an ordinary serial `dvc repro`, committed."""

    path: Path
    log: str  # what that dvc repro printed
    old_lrs: dict[str, float]


@pytest.fixture(scope="session")
def serial(smoke_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    path = tmp_path_factory.mktemp("serial") / "project"
    shutil.copytree(smoke_run.path, path, symlinks=True)
    git(path, "checkout", "-q", "-b", "tune")
    old_lrs = change(path)
    log = dvc(path, "repro")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "two new learning rates")
    yield Reference(path, log, old_lrs)
    shutil.rmtree(path, ignore_errors=True)


def test_changing_two_lrs_reruns_only_their_chains_and_diffs_against_main(serial: Reference) -> None:
    # validate checks the changed params.yaml: its marker comes back the same, so nothing else reruns for it
    assert stages_run(serial.log) == {"validate", *CHAINS, "ensemble", "publish", "summary", "plot"}
    # the rerun's commit passes check-lock in a fresh clone (no data, no cache), as the PR check runs it
    check = tool(clone(serial.path, serial.path.parent / "clone"), "lockcheck")
    assert check.returncode == 0, check.stdout + check.stderr
    params_diff = json.loads(dvc(serial.path, "params", "diff", "main", "--json"))
    assert params_diff == {
        "params.yaml": {
            f"models.{model}.lr": {
                "old": serial.old_lrs[model],
                "new": lr,
                "diff": lr - serial.old_lrs[model],
            }
            for model, lr in CHANGED.items()
        }
    }
    metrics_diff = json.loads(dvc(serial.path, "metrics", "diff", "main", "--json"))
    assert all("accuracy" in metrics_diff[f"metrics/{model}.json"] for model in CHANGED)
    models = yaml.safe_load((serial.path / "params.yaml").read_text())["models"]
    assert not {f"metrics/{model}.json" for model in models if model not in CHANGED} & set(metrics_diff)


def test_make_repro_jobs_2_writes_a_serial_runs_lock_and_a_failed_chain_loses_nothing(
    repo: Path, serial: Reference
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

    # cnn2 as a fresh clone has it: DVC would restore its chain from the dvc.lock entry, whose timing records
    # come from the committing run and so are in no cache here; the final repro must take the chain's new
    # run-cache entry instead. Its committed md5 must come back.
    committed = md5(repo / "models/cnn2.pt")
    as_in_a_fresh_clone(repo, FRESH)
    module.write_text(good)
    done = make(repo, "repro", "JOBS=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running the chains of mlp, cnn6, cnn2, 2 at a time" in done.stdout
    fresh = {f"train@{FRESH}", f"evaluate@{FRESH}"}
    assert restored(done.stdout) == set(CHAINS) | fresh  # the final serial repro ran none of them
    assert lock_view(repo) == lock_view(serial.path)
    assert md5(repo / "models/cnn2.pt") == committed
    assert "Data and pipelines are up to date" in dvc(repo, "status")  # and the files are what the lock says
    assert dvc(repo, "exp", "list").strip() == ""  # no helper experiment is left

    # The run cache's side effect: going back to a setting already run restores it instead of retraining.
    git(repo, "checkout", "--", "params.yaml")
    back = dvc(repo, "repro", "train@mlp", "evaluate@mlp")
    assert restored(back) == {"train@mlp", "evaluate@mlp"}
    assert md5(repo / "models/mlp.pt") == before["models/mlp.pt"]


def test_a_relay_between_two_clones_sharing_only_a_remote_writes_a_serial_runs_lock(
    repo: Path, serial: Reference, tmp_path: Path
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
    assert lock_view(last) == lock_view(serial.path)
    assert "Data and pipelines are up to date" in dvc(last, "status")
