"""Results that travel without retraining: the team's DVC remote, with a clear error when there is none.

    python -m mnist_tools.remote push           # hash what it sends, dvc push, then check nothing is missing
    python -m mnist_tools.remote pull           # dvc pull: data, processed tensors, models and logits
    python -m mnist_tools.remote check [--md]   # exit 1 listing the outputs in dvc.lock the remote lacks

The remote is the default one in .dvc/config (committed, so every clone and CI use it) or
.dvc/config.local; docs/guide.md: "Sharing results: a DVC remote" shows how to add one.

`dvc push` sends cache objects under the names dvc.lock gives them and never reads them back: a corrupt
object would reach the remote under the good name, and every teammate's `make pull` would fetch it. So
push first hashes every object it is about to send and refuses a mismatch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_tools.lockcheck import recorded_outputs
from mnist_tools.report import dvc
from mnist_tools.verify import Hasher, git_tracked

NO_REMOTE = (
    "no DVC remote is configured (fix: add the team's with `dvc remote add -d storage URL`, a shared "
    "folder, s3://bucket/path, gs://bucket/path or ssh://host/path as in docs/guide.md: "
    '"Sharing results: a DVC remote", and commit .dvc/config)'
)
UNPUSHED = ("new", "missing")  # `dvc status --cloud`: in the local cache only, or in neither cache nor remote


def default_remote(repo: Path) -> str | None:
    """Name of the project's default DVC remote (`dvc config core.remote`, every config level), or None."""
    result = subprocess.run(["dvc", "config", "core.remote"], cwd=repo, capture_output=True, text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def locked_outputs(repo: Path) -> list[str]:
    """Every output path dvc.lock records."""
    with (repo / "dvc.lock").open() as f:
        lock = yaml.safe_load(f) or {}
    return [out["path"] for entry in lock.get("stages", {}).values() for out in entry.get("outs", [])]


def unpushed_outputs(cloud_status: dict[str, str], outputs: list[str]) -> list[str]:
    """The dvc.lock outputs that `dvc status --cloud --json` reports absent from the remote, sorted.

    DVC lists the files inside a folder output one by one; each is reported as its output.
    """
    missing = set()
    for path, state in cloud_status.items():
        if state not in UNPUSHED:
            continue
        owners = [out for out in outputs if path == out or path.startswith(out.rstrip("/") + "/")]
        missing.add(max(owners, key=len) if owners else path)
    return sorted(missing)


def check(repo: Path) -> tuple[str | None, list[str]]:
    """The default remote (None: not configured) and the outputs in dvc.lock it lacks."""
    remote = default_remote(repo)
    if remote is None:
        return None, []
    status = json.loads(dvc("status", "--cloud", "--json", cwd=repo) or "{}")
    return remote, unpushed_outputs(status, locked_outputs(repo))


def check_markdown(remote: str | None, missing: list[str]) -> str:
    """The remote check as a section of the pull request's job summary."""
    if remote is None:
        return (
            "### ⏭️ DVC remote: not checked\n\nThe repository defines no DVC remote "
            "(committed `.dvc/config`, or the `DVC_REMOTE_URL` repository secret), so nobody can pull "
            "this branch's models without retraining. "
            'How to add one: docs/guide.md: "Sharing results: a DVC remote".\n'
        )
    if not missing:
        return f"### ✅ DVC remote `{remote}` holds every output in dvc.lock\n"
    items = "\n".join(f"- `{path}`" for path in missing)
    return (
        f"### ❌ DVC remote `{remote}` lacks {len(missing)} outputs of dvc.lock\n\nForgot to `dvc push` "
        f"(`make push`) after the run that wrote dvc.lock?\n\n{items}\n"
    )


def corrupt_objects(repo: Path) -> list[str]:
    """One line per cache object that dvc.lock names and that holds other bytes than its md5 says.

    Absent objects are left to `dvc push` and the check after it; git-tracked outputs travel by git.
    """
    with (repo / "dvc.lock").open() as f:
        outputs = recorded_outputs(yaml.safe_load(f) or {})
    hasher, tracked = Hasher(repo), git_tracked(repo)
    lines = []
    for path, locked in sorted(outputs.items()):
        problem = None if path in tracked else hasher.cache_problem(locked.md5)
        if problem and not problem.startswith("absent"):
            obj = hasher.cache_object(locked.md5)
            lines.append(
                f"{path}: its DVC cache object {obj} is {problem}, not {locked.md5} (repair: `rm -f {obj} "
                f"{path}`, then `make pull` or `dvc repro -f {locked.stage}`)"
            )
    return lines


def lock_committed(repo: Path) -> bool:
    """Whether the workspace's dvc.lock is the one HEAD commits."""
    return subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "dvc.lock"], cwd=repo).returncode == 0


def push(repo: Path) -> None:
    """Hash what dvc push would send, push it, then check the remote holds every output in dvc.lock."""
    corrupt = corrupt_objects(repo)
    if corrupt:
        raise PipelineError(
            f"refusing to push: {len(corrupt)} DVC cache objects are corrupt and would reach the remote "
            f"under their good names: {'; '.join(corrupt)} (fix: the repair named for each, then `make push`)"
        )
    committed = lock_committed(repo)
    if not committed:
        print(
            "warning: this workspace's dvc.lock is not the committed one: clones pull by the committed lock, "
            "so commit dvc.lock with metrics/ and plots/ to share this run",
            file=sys.stderr,
        )
    _run_dvc(repo, "push")
    remote, missing = check(repo)
    if missing:
        raise PipelineError(
            f"after the push, DVC remote {remote!r} still lacks {', '.join(missing)}: they are "
            "in no local cache either (fix: rerun the stages that write them with `dvc repro`, then push)"
        )
    which = "dvc.lock" if committed else "this workspace's uncommitted dvc.lock"
    print(f"DVC remote {remote!r} holds every output in {which}")


def _run_dvc(repo: Path, *args: str) -> None:
    """Run dvc with its own progress output; a failure is a PipelineError."""
    if subprocess.run(["dvc", *args], cwd=repo).returncode != 0:
        raise PipelineError(
            f"`dvc {' '.join(args)}` failed (fix: DVC printed why just above; for files it says it cannot "
            "remove, `make verify` tells an edit from damage, and `dvc checkout --force` with their paths "
            "replaces them by the copies dvc.lock names)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["push", "pull", "check"])
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="project folder")
    parser.add_argument("--md", action="store_true", help="check: Markdown for a job summary")
    args = parser.parse_args()
    repo = args.repo.resolve()
    if args.command == "check":
        remote, missing = check(repo)
        if args.md:
            print(check_markdown(remote, missing))
        elif remote is None:
            print("no DVC remote is configured: skipped the check that dvc.lock's outputs were pushed")
        elif missing:
            print(
                f"error: DVC remote {remote!r} lacks {len(missing)} outputs of dvc.lock: "
                f"{', '.join(missing)} (fix: run `make push`, i.e. dvc push, from the workspace that ran "
                "the pipeline)",
                file=sys.stderr,
            )
        else:
            print(f"DVC remote {remote!r} holds every output in dvc.lock")
        sys.exit(1 if missing else 0)
    if default_remote(repo) is None:
        raise PipelineError(NO_REMOTE)
    if args.command == "push":
        push(repo)
    else:
        _run_dvc(repo, "pull")


if __name__ == "__main__":
    run(main)
