"""Does this workspace hold a commit's outputs bit for bit? Every output hashed now, against its dvc.lock.

    python -m mnist_tools.verify [--rev main]     # exit 1 if any compared output differs or is missing

Each output is hashed here, as DVC hashes it (the md5 of a file's bytes; a folder's `.dir` digest by
dvc-data), with no state database and no mtime shortcut: DVC's own bookkeeping trusts a file whose
inode, mtime and size it has seen before, so a corrupted cache object checked out again passes
`dvc status`. The check cannot know whether a file was reproduced or pulled; it says whether the bytes
are the commit's. A file that is not names both md5s, whether DVC's cache object is intact (hashed
too), and the repair. Outputs that hold wall-clock time or the name of the machine (TIMED_OUTPUTS,
declared here once) are listed apart and never fail the check.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import file_digest
from mnist_tools.lockcheck import LockedFile, recorded_outputs

# Outputs that differ on every run or every machine by design: seconds per epoch, inference speed,
# training seconds in the leaderboard, and the machine records (CPU name, flags).
# The train and evaluate stages' folders hold them beside files that must reproduce (metrics, predictions):
# the publish stage's copies of those (metrics/, plots/predictions, plots/per_class) are checked instead.
TIMED_OUTPUTS = (
    "data/training/*",  # history.csv's seconds column, env.json
    "data/evaluation/*",  # timing.json, env.json
    "plots/train",  # the histories, published
    "metrics/timing",  # inference images per second, published
    "metrics/env",  # the machine records (CPU model, flags, Python), published
    "plots/leaderboard.csv",  # training seconds, images per second
    "plots/leaderboard.md",
)
GET_OUTPUTS = "`make pull` (the team's DVC remote) or `make repro`"


def is_timed(path: str) -> bool:
    """Whether path is one of TIMED_OUTPUTS, or inside one (a commit before the publish stage recorded
    metrics/timing/<model>.json and the like one by one)."""
    paths = [path, *map(str, PurePosixPath(path).parents)]
    return any(fnmatch.fnmatchcase(p, pattern) for p in paths for pattern in TIMED_OUTPUTS)


class Hasher:
    """md5s as dvc.lock records them, computed from the bytes now; the DVC cache objects behind them."""

    def __init__(self, repo: Path) -> None:
        from dvc.repo import Repo  # ~1 s: only when hashing

        self.repo = repo
        with Repo(str(repo)) as dvc_repo:
            self.ignore = dvc_repo.dvcignore  # what DVC leaves out of a folder's digest
            self.cache = dvc_repo.cache.local

    def output(self, path: Path) -> str | None:
        """The md5 of a file, or the `.dir` digest of a folder, as dvc.lock records it; None if absent."""
        if path.is_file():
            return file_digest(path)
        if not path.is_dir():
            return None
        from dvc_data.hashfile.build import build
        from dvc_data.hashfile.db import HashFileDB
        from dvc_objects.fs.local import LocalFileSystem

        fs = LocalFileSystem()
        with tempfile.TemporaryDirectory() as scratch:
            # a fresh object database has no state: every file in the folder is read and hashed
            odb = HashFileDB(fs, scratch)
            _, _, tree = build(odb, os.fspath(path.resolve()), fs, "md5", dry_run=True, ignore=self.ignore)
        return tree.hash_info.value

    def cache_object(self, md5: str) -> Path:
        """Where DVC's local cache keeps the object of an md5 (a folder's `.dir` listing for folders)."""
        return Path(self.cache.oid_to_path(md5))

    def cache_problem(self, md5: str) -> str | None:
        """What is wrong with the cache object of md5: absent or holding other bytes; None when intact.

        A folder's object is its listing; each file it lists is checked against its own object.
        """
        obj = self.cache_object(md5)
        if not obj.is_file():
            return "absent"
        actual = file_digest(obj)
        if actual != md5.removesuffix(".dir"):
            return f"bad (its md5 is {actual})"
        if md5.endswith(".dir"):
            for entry in json.loads(obj.read_text()):
                problem = self.cache_problem(entry["md5"])
                if problem:
                    return (
                        f"{problem.split(' ')[0]} for {entry['relpath']} ({self.cache_object(entry['md5'])})"
                    )
        return None


@dataclass(frozen=True)
class Outcome:
    """One output: the stage that writes it, and whether the workspace holds the commit's bytes."""

    path: str
    stage: str
    state: str  # matches | differs | missing | new
    timed: bool
    detail: tuple[str, ...] = ()  # for an output that does not match: md5s, the cache object, the repair

    def lines(self) -> list[str]:
        """'matches  models/lenet.pt  (train@lenet)', then the detail lines indented."""
        return [f"{self.state:<8} {self.path}  ({self.stage})", *(f"         {line}" for line in self.detail)]


@dataclass(frozen=True)
class Diagnosis:
    """Why an output does not match the commit's md5: a run that made other bytes, or a damaged copy."""

    rev: str
    hasher: Hasher
    tracked: set[str]  # git-tracked outputs (`cache: false`): no DVC cache object backs them

    def __call__(
        self, path: str, locked: LockedFile, actual: str, workspace_md5: str | None
    ) -> tuple[str, ...]:
        """The detail lines: both md5s, the cache object's state, and the repair."""
        here = f"md5 {actual} here, {locked.md5} in {self.rev}'s dvc.lock"
        if actual == workspace_md5:
            return (f"{here}: the run recorded in this workspace's dvc.lock made other bytes",)
        # every repair removes the bad copy: git and DVC skip a file whose size and mtime they have seen
        # before, and a flipped bit changes neither
        damaged = f"{here}: the file was edited or damaged"
        if path in self.tracked:
            return (
                damaged,
                f"repair: `rm -f {path} && git checkout -- {path}`, or `dvc repro -f {locked.stage}`",
            )
        recorded = workspace_md5 or locked.md5
        obj, problem = self.hasher.cache_object(recorded), self.hasher.cache_problem(recorded)
        if problem is None:
            return (
                f"{damaged}; its DVC cache object {obj} is intact",
                f"repair: `rm -f {path} && dvc checkout {path}`",
            )
        return (
            f"{damaged}, and its DVC cache object {obj} is {problem}",
            f"repair: `rm -f {obj} {path}`, then `make pull` or `dvc repro -f {locked.stage}`",
        )


def compare_outputs(
    committed: dict[str, LockedFile],
    workspace: dict[str, LockedFile],
    hash_output: Callable[[str], str | None],
    diagnose_one: Callable[[str, LockedFile, str, str | None], tuple[str, ...]],
) -> list[Outcome]:
    """Every output of either lock: its bytes now (hash_output) against the commit's md5."""
    outcomes = []
    for path in sorted(committed.keys() | workspace.keys()):
        old, new = committed.get(path), workspace.get(path)
        if old is None:
            outcomes.append(
                Outcome(path, new.stage, "new", is_timed(path), ("not in the commit's dvc.lock",))
            )
            continue
        actual = None if is_timed(path) else hash_output(path)
        if is_timed(path):
            state, detail = "-", ()
        elif actual is None:
            state, detail = "missing", ()
        elif actual == old.md5:
            state, detail = "matches", ()
        else:
            state, detail = "differs", diagnose_one(path, old, actual, new.md5 if new else None)
        outcomes.append(Outcome(path, old.stage, state, is_timed(path), detail))
    return outcomes


def report(outcomes: list[Outcome], rev: str) -> tuple[str, bool]:
    """The printed report, and whether every compared output matched."""
    compared = [o for o in outcomes if not o.timed]
    timed = [o for o in outcomes if o.timed]
    bad = [o for o in compared if o.state != "matches"]
    lines = [line for o in compared for line in o.lines()]
    lines += ["", f"wall-clock time or machine name, not compared ({len(timed)}):"]
    lines += [f"  {o.path}  ({o.stage})" for o in timed]
    matched = len(compared) - len(bad)
    verdict = f"{matched} of {len(compared)} outputs match {rev}'s dvc.lock bit for bit, each file hashed now"
    if bad:
        verdict += f"; {len(bad)} {'does' if len(bad) == 1 else 'do'} not: {', '.join(o.path for o in bad)}"
    lines += ["", verdict]
    if any(o.state == "missing" for o in bad):
        lines.append(f"get the missing ones with {GET_OUTPUTS}")
    return "\n".join(lines), not bad


def committed_lock(rev: str, repo: Path) -> dict:
    """dvc.lock as committed at rev."""
    shown = subprocess.run(["git", "show", f"{rev}:dvc.lock"], cwd=repo, capture_output=True, text=True)
    if shown.returncode != 0:
        raise PipelineError(
            f"`git show {rev}:dvc.lock` failed: {shown.stderr.strip()} "
            "(fix: name a commit that has a dvc.lock, e.g. `make verify REV=HEAD`)"
        )
    return yaml.safe_load(shown.stdout) or {}


def git_tracked(repo: Path) -> set[str]:
    """The files git tracks in repo: outputs with `cache: false`, which no DVC cache object backs."""
    listed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True)
    return set(listed.stdout.splitlines())


def verify(repo: Path, rev: str) -> tuple[str, bool]:
    """The report of the workspace's outputs against rev's dvc.lock, and whether all matched."""
    committed = recorded_outputs(committed_lock(rev, repo))
    lock = repo / "dvc.lock"
    workspace = recorded_outputs(yaml.safe_load(lock.read_text()) or {}) if lock.exists() else {}
    hasher = Hasher(repo)
    diagnosis = Diagnosis(rev, hasher, git_tracked(repo))
    outcomes = compare_outputs(committed, workspace, lambda path: hasher.output(repo / path), diagnosis)
    return report(outcomes, rev)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rev", default="main", help="the commit whose dvc.lock the outputs must match")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the project folder")
    args = parser.parse_args()
    text, ok = verify(args.repo.resolve(), args.rev)
    print(text)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    run(main)
