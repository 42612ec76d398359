"""Mutation testing of the pipeline core: mutmut's score per module, failing below the goal.

    python -m mnist_tools.mutation [--keep]      # make mutation

Runs `mutmut run` over the modules and unit tests set in pyproject.toml ([tool.mutmut]) from a clean
mutants/ folder, then prints one Markdown row per module (killed / all mutants) and every mutant that
survived or was not decided. Survivors known to be equivalent are listed with their reason in
docs/mutation.md; inspect one with `mutmut show <name>`.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError

GOAL = 0.90  # share of mutants each module's tests must kill


def module_scores(results: str) -> dict[str, collections.Counter]:
    """Per module, a count of mutmut outcomes.

    From the lines of `mutmut results --all true`: `pkg.module.x_fn__mutmut_N: status`.
    """
    scores: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            scores[name.split(".x_")[0].split(".xǁ")[0]][status] += 1
    return dict(scores)


def score_table(scores: dict[str, collections.Counter]) -> str:
    """Markdown: module, killed, survived, other (timeout, suspicious, not checked), score."""
    lines = [
        "| module | mutants | killed | survived | undecided | killed share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for module, counts in sorted(scores.items()):
        total = sum(counts.values())
        undecided = total - counts["killed"] - counts["survived"]
        lines.append(
            f"| {module} | {total} | {counts['killed']} | {counts['survived']} | {undecided} | "
            f"{counts['killed'] / total:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep", action="store_true", help="reuse mutants/ from an earlier run (only rerun what changed)"
    )
    args = parser.parse_args()
    if not args.keep:
        shutil.rmtree("mutants", ignore_errors=True)
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # mutmut runs one test process per core
    run = subprocess.run(["mutmut", "run"], env=env, stdout=subprocess.DEVNULL)
    if run.returncode not in (0, 1):
        raise PipelineError(f"mutmut run exited with {run.returncode} (fix: rerun `mutmut run` to see why)")
    results = subprocess.run(
        ["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    scores = module_scores(results)
    if not any(c["killed"] + c["survived"] for c in scores.values()):
        raise PipelineError(
            "mutmut tested no mutant: its first run of the unit tests failed (fix: run `mutmut run` "
            "and `python -m pytest` in mutants/ to see why)"
        )
    print(score_table(scores))
    survivors = [
        line.strip() for line in results.splitlines() if line.strip() and not line.endswith(": killed")
    ]
    if survivors:
        print(
            "\nNot killed (`mutmut show <name>` prints the change):\n"
            + "\n".join(f"- {s}" for s in survivors)
        )
    below = [m for m, c in scores.items() if c["killed"] / sum(c.values()) < GOAL]
    if below:
        print(f"error: under {GOAL:.0%} of mutants killed in {', '.join(sorted(below))}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run(main)
