"""The smoke profile: the real dvc.yaml on 2,000 training and 1,000 val images, one epoch, in a scratch copy.

    python -m mnist_tools.smoke build/smoke

copies the project's files (tracked and untracked, not ignored) into the folder, makes it a git
repository, and runs `dvc exp run` there with the overrides below, so the user's workspace and its
results are never touched. CI and the end-to-end tests use the same function.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.data import verified_raw
from mnist_pipeline.errors import PipelineError

TRAIN_LIMIT = 2000  # training images kept
VAL_SIZE = 1000  # val images scored after the epoch (5,000 in the full run; the val pass dominated slow CPUs)
EPOCHS = 1
# Test-time shifts score every test image five times (evaluate@resnet18: 15 of its 20 s on the smoke run);
# one cheap model keeps its recipe's setting, so the val choice and the shifted pass still run end to end.
KEEP_SHIFTS = "mlp"
RAW_DIR = "data/raw"  # the download stage's output (dvc.yaml)
LEADERBOARD = "plots/leaderboard.md"  # the plot stage's readable table (dvc.yaml)


def smoke_overrides(params_path: Path) -> list[str]:
    """`dvc exp run -S` overrides that shrink every stage of the full pipeline."""
    with params_path.open() as f:
        params = yaml.safe_load(f)
    models = params["models"]
    # A weight average over ~1/(1 - ema_decay) steps would be mostly the untrained start after ~16 steps.
    no_ema = [f"models.{name}.ema_decay=0" for name, recipe in models.items() if recipe.get("ema_decay")]
    shifts = [
        f"models.{name}.test_shifts=never"
        for name, recipe in models.items()
        if name != KEEP_SHIFTS and recipe.get("test_shifts", "never") != "never"
    ]
    return [
        f"preprocess.train_limit={TRAIN_LIMIT}",
        f"preprocess.val_size={VAL_SIZE}",
        *(f"models.{name}.epochs={EPOCHS}" for name in models),
        *no_ema,
        *shifts,
    ]


def project_files(root: Path) -> list[str]:
    """Files git tracks or would track (untracked but not ignored), relative to root."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f and (root / f).is_file()]


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd with a fixed identity; return stdout."""
    identity = ["-c", "user.name=smoke", "-c", "user.email=smoke@localhost", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def copy_project(root: Path, dest: Path) -> None:
    """Copy the project into dest as a fresh git repo with one commit (without dvc.lock: nothing ran yet)."""
    if dest.exists():
        shutil.rmtree(dest)
    for name in project_files(root):
        if name == "dvc.lock":
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "project copy for a smoke run")


def reuse_mnist(root: Path, dest: Path) -> bool:
    """Hard-link (or copy) the project's verified MNIST files into dest; False when it has none.

    The download stage keeps files whose md5s are MNIST's, so a smoke run needs no network once the
    project has downloaded them: offline users and CI runs share the same four files.
    """
    if not verified_raw(root / RAW_DIR):
        return False
    shutil.copytree(root / RAW_DIR, dest / RAW_DIR, copy_function=_link_or_copy)
    return True


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def run_smoke(root: Path, dest: Path) -> None:
    """Copy the project to dest and run the whole DAG there with the smoke overrides."""
    copy_project(root, dest)
    if reuse_mnist(root, dest):
        # `dvc exp run` starts by checking out every output that dvc.lock records, and clears those it
        # records none for: record the linked files as the download stage's output first (validate, which
        # it depends on, takes two seconds), so the run keeps them and skips the download.
        for command in (["repro", "--quiet", "validate"], ["commit", "--quiet", "--force", "download"]):
            subprocess.run(["dvc", *command], cwd=dest, check=True)
    sets = [arg for override in smoke_overrides(dest / "params.yaml") for arg in ("-S", override)]
    subprocess.run(["dvc", "exp", "run", *sets], cwd=dest, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path, help="scratch folder (replaced)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project to copy")
    args = parser.parse_args()
    try:
        run_smoke(args.root.resolve(), args.dest.resolve())
    except subprocess.CalledProcessError as e:
        raise PipelineError(
            f"smoke run failed: {' '.join(map(str, e.cmd))} exited with {e.returncode} "
            f"(fix: the failing stage printed why above; its files are in {args.dest})"
        ) from None
    print((args.dest / LEADERBOARD).read_text(), end="")
    print(f"smoke run done in {args.dest}: `dvc metrics show` there has every number")


if __name__ == "__main__":
    run(main)
