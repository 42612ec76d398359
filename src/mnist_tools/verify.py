"""Did this workspace reproduce a commit? Every output of `make repro` against that commit's dvc.lock.

    python -m mnist_tools.verify [--rev HEAD]        # after `make repro`; exit 1 if anything differs

DVC does the hashing: `dvc status` must find every output as the workspace's dvc.lock records it
(nothing missing, nothing edited by hand, no stage left to run), and then each output's md5 in the
workspace's dvc.lock is compared with the one in the commit's. Outputs that hold wall-clock time or
the name of the machine (TIMED_OUTPUTS, declared here once) are listed apart and never fail the check.
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_tools.lockcheck import LockedFile, dvc_status, recorded_outputs

# Outputs that differ on every run or every machine by design: seconds per epoch, inference speed,
# training seconds in the leaderboard, and the machine records (CPU name, flags).
TIMED_OUTPUTS = (
    "plots/train/*.csv",  # per-epoch history: its seconds column
    "metrics/timing/*.json",  # inference images per second
    "plots/leaderboard.csv",  # training seconds, images per second
    "plots/leaderboard.md",
    "metrics/env/*/*.json",  # the machine record: CPU model, flags, Python
)


@dataclass(frozen=True)
class Outcome:
    """One output: the stage that writes it, and whether the workspace matches the commit."""

    path: str
    stage: str
    state: str  # reproduced | differs | missing | new
    timed: bool

    def line(self) -> str:
        """'reproduced  models/lenet.pt  (train@lenet)'."""
        return f"{self.state:<11} {self.path}  ({self.stage})"


def is_timed(path: str) -> bool:
    """Whether path is one of TIMED_OUTPUTS."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in TIMED_OUTPUTS)


def compare_outputs(committed: dict[str, LockedFile], workspace: dict[str, LockedFile]) -> list[Outcome]:
    """Every output of either lock, reproduced when its md5 is the commit's."""
    outcomes = []
    for path in sorted(committed.keys() | workspace.keys()):
        old, new = committed.get(path), workspace.get(path)
        if old is None:
            state = "new"
        elif new is None:
            state = "missing"
        else:
            state = "reproduced" if old.md5 == new.md5 else "differs"
        outcomes.append(Outcome(path, (new or old).stage, state, is_timed(path)))
    return outcomes


def unfinished_stages(status: dict[str, list]) -> list[str]:
    """Stages that `dvc status` says are not as the workspace's dvc.lock records them."""
    return sorted(stage.split(":")[-1] for stage in status if not stage.endswith(".dvc"))


def committed_lock(rev: str, repo: Path) -> dict:
    """dvc.lock as committed at rev."""
    shown = subprocess.run(["git", "show", f"{rev}:dvc.lock"], cwd=repo, capture_output=True, text=True)
    if shown.returncode != 0:
        raise PipelineError(
            f"`git show {rev}:dvc.lock` failed: {shown.stderr.strip()} "
            "(fix: name a commit that has a dvc.lock)"
        )
    return yaml.safe_load(shown.stdout) or {}


def report(outcomes: list[Outcome]) -> tuple[str, bool]:
    """The printed report, and whether every compared output reproduced."""
    compared = [o for o in outcomes if not o.timed]
    timed = [o for o in outcomes if o.timed]
    bad = [o for o in compared if o.state != "reproduced"]
    lines = [o.line() for o in compared]
    lines += ["", f"wall-clock time or machine name, not compared ({len(timed)}):"]
    lines += ["  " + o.line() for o in timed]
    lines += [
        "",
        f"{len(compared) - len(bad)} of {len(compared)} outputs reproduced bit for bit"
        + (f"; {len(bad)} did not: {', '.join(o.path for o in bad)}" if bad else ""),
    ]
    return "\n".join(lines), not bad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rev", default="HEAD", help="the commit whose dvc.lock the workspace must match")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the project folder")
    args = parser.parse_args()
    unfinished = unfinished_stages(dvc_status(args.repo))
    if unfinished:
        raise PipelineError(
            f"the workspace's outputs are not those of a finished run ({', '.join(unfinished)}: `dvc status` "
            "lists them) (fix: run `make repro` first)"
        )
    workspace_lock = args.repo / "dvc.lock"
    with workspace_lock.open() as f:
        workspace = recorded_outputs(yaml.safe_load(f) or {})
    text, ok = report(compare_outputs(recorded_outputs(committed_lock(args.rev, args.repo)), workspace))
    print(text)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    run(main)
