"""What a pull request changes: a Markdown summary for the reviewer and a guard on test accuracy.

    python -m mnist_tools.report summary --base REV [--smoke DIR]   # Markdown on stdout
    python -m mnist_tools.report guard --base REV                    # exit 1 on a regression

Both compare the committed full-run results of REV with HEAD through `dvc params diff` and
`dvc metrics diff`; metrics are git-tracked, so no DVC remote is needed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnist_pipeline.cli import run
from mnist_pipeline.environment import COMPARED, ENV_DIR, bit_class, describe
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import guard_params, load_params


@dataclass(frozen=True)
class AccuracyChange:
    """One model's committed test accuracy at the base and at the head (fractions; None if absent)."""

    model: str
    old: float | None
    new: float | None

    @property
    def change_pp(self) -> float | None:
        """Change in percentage points, None when the model exists on one side only."""
        if self.old is None or self.new is None:
            return None
        return 100 * (self.new - self.old)


def dvc(*args: str, cwd: Path | None = None) -> str:
    """Run a dvc command and return its stdout; a failure becomes a PipelineError."""
    try:
        result = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError(
            "the dvc command is not on PATH (fix: run it through make, e.g. `make check-lock`, "
            "or activate the project's environment: `. .venv/bin/activate`)"
        ) from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise PipelineError(
            f"`dvc {' '.join(args)}` failed: {last} (fix: run it yourself to see the whole message)"
        )
    return result.stdout


def accuracy_changes(metrics_json: dict) -> list[AccuracyChange]:
    """Per-model accuracy from `dvc metrics diff --all --json` output, sorted by model name."""
    changes = []
    for path, metrics in sorted(metrics_json.items()):
        if "accuracy" in metrics:
            entry = metrics["accuracy"]
            changes.append(AccuracyChange(Path(path).stem, entry.get("old"), entry.get("new")))
    return changes


def guard_failures(changes: list[AccuracyChange], max_drop_pp: float) -> list[str]:
    """One sentence per model whose accuracy fell by more than max_drop_pp percentage points."""
    failures = []
    for c in changes:
        if c.change_pp is not None and c.change_pp < -max_drop_pp - 1e-9:
            failures.append(
                f"{c.model}: test accuracy fell {-c.change_pp:.2f} pp ({100 * c.old:.2f}% → "
                f"{100 * c.new:.2f}%), more than guard.max_accuracy_drop_pp = {max_drop_pp}"
            )
    return failures


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def accuracy_table(changes: list[AccuracyChange], max_drop_pp: float) -> str:
    """Markdown table: model, base and head accuracy, change in pp, and a verdict."""
    rows = ["| model | base | head | change | |", "|---|---:|---:|---:|---|"]
    for c in changes:
        pp = c.change_pp
        verdict = (
            "new"
            if c.old is None
            else "removed"
            if c.new is None
            else "❌ regression"
            if pp < -max_drop_pp - 1e-9
            else "✅"
        )
        change = "—" if pp is None else f"{pp:+.2f} pp"
        rows.append(f"| {c.model} | {_percent(c.old)} | {_percent(c.new)} | {change} | {verdict} |")
    return "\n".join(rows)


def _table_or(md: str, empty: str) -> str:
    """A dvc Markdown table, or a sentence when it has no rows (dvc prints the header alone)."""
    lines = [line for line in md.strip().splitlines() if line.strip()]
    return "\n".join(lines) if len(lines) > 2 else empty


def guard_sentence(max_drop_pp: float) -> str:
    """How the guard threshold relates to noise, for the reviewer."""
    return (
        f"The accuracy guard fails a model whose test accuracy falls by more than {max_drop_pp} pp, "
        "a threshold set above the differences that seeds and CPU types alone produced "
        '(docs/results.md: "Reproducibility", the paragraph "The guard").'
    )


def recorded_environments(rev: str, repo: Path) -> dict[str, dict]:
    """The environment records (metrics/env/**.json) committed at a git revision, by path."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "--", ENV_DIR], cwd=repo, capture_output=True, text=True
    )
    if listing.returncode != 0:
        raise PipelineError(
            f"`git ls-tree {rev}` failed: {listing.stderr.strip()} (fix: fetch {rev}, or name a revision "
            "this clone has)"
        )
    envs = {}
    for path in listing.stdout.split():
        if path.endswith(".json"):
            shown = subprocess.run(
                ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True, check=True
            )
            envs[path] = json.loads(shown.stdout)
    return envs


def _machines(envs: dict[str, dict]) -> list[str]:
    """The distinct environments among records, each described once."""
    seen: dict[tuple, str] = {}
    for env in envs.values():
        seen.setdefault(tuple(str(env.get(k)) for k in COMPARED), describe(env))
    return sorted(seen.values())


def _bit_classes(envs: dict[str, dict]) -> list[dict]:
    """The distinct bit classes (environment.bit_class) among records."""
    seen: dict[str, dict] = {}
    for env in envs.values():
        cls = bit_class(env)
        seen.setdefault(json.dumps(cls, sort_keys=True, default=str), cls)
    return list(seen.values())


def environment_section(base_envs: dict[str, dict], head_envs: dict[str, dict], max_drop_pp: float) -> str:
    """Markdown: whether base and head results are comparable bit for bit, and if not, what differs."""
    noise = guard_sentence(max_drop_pp)
    base, head = _machines(base_envs), _machines(head_envs)
    if not base and not head:
        return f"### Environment\n\nNeither side records the machine behind its results. {noise}\n"
    if not base or not head:
        known = "head" if head else "base"
        return (
            f"### Environment\n\nOnly the {known} records its machine: {'; '.join(head or base)}. "
            f"The other side's results may come from another CPU. {noise}\n"
        )
    sides = f"- base: {'; '.join(base)}\n- head: {'; '.join(head)}\n"
    base_classes, head_classes = _bit_classes(base_envs), _bit_classes(head_envs)
    if len(base_classes) == 1 and base_classes == head_classes:
        return (
            "### Environment: comparable bit for bit\n\nBase and head ran the same numerics mode, torch "
            "and threads (and, in native numerics, the same CPU type), so a model whose code, params and "
            "data did not change has the same numbers on both sides, and every difference is the change's "
            "own.\n\n"
            f"{sides}"
        )
    fields = sorted(
        {
            key
            for b in base_classes
            for h in head_classes
            for key in b.keys() | h.keys()
            if b.get(key) != h.get(key)
        }
        | ({"mixed within a side"} if len(base_classes) > 1 or len(head_classes) > 1 else set())
    )
    return (
        "### ⚠️ Not comparable bit for bit\n\nBase and head results differ in what decides their bits "
        f"({', '.join(fields)}), so every model may differ slightly even where nothing changed.\n\n"
        f"{sides}\n{noise}\n"
    )


def summary_markdown(
    base: str,
    params_md: str,
    metrics_md: str,
    changes: list[AccuracyChange],
    max_drop_pp: float,
    smoke_md: str | None,
    environment_md: str = "",
) -> str:
    """The job summary a reviewer reads."""
    parts = [
        f"## Model check against `{base}`",
        "",
        environment_md,
        "### Test accuracy of the committed full run",
        "",
        accuracy_table(changes, max_drop_pp),
        "",
        guard_sentence(max_drop_pp),
        "",
        "### Params changed",
        "",
        _table_or(params_md, "No params changed."),
        "",
        "### Metrics changed (`dvc metrics diff`)",
        "",
        _table_or(metrics_md, "No metrics changed."),
        "",
    ]
    if smoke_md is not None:
        parts += [
            "### Smoke run of this head (2,000 training images, 1 epoch: not comparable to the table above)",
            "",
            smoke_md.strip(),
            "",
        ]
    return "\n".join(parts)


def compare(base: str, repo: Path) -> tuple[str, str, list[AccuracyChange], float]:
    """params diff (Markdown), metrics diff (Markdown), accuracy changes and the guard threshold."""
    params_md = dvc("params", "diff", base, "HEAD", "--md", cwd=repo)
    metrics_md = dvc("metrics", "diff", base, "HEAD", "--md", cwd=repo)
    changes = accuracy_changes(
        json.loads(dvc("metrics", "diff", base, "HEAD", "--all", "--json", cwd=repo) or "{}")
    )
    max_drop = guard_params(load_params(repo / "params.yaml")).max_accuracy_drop_pp
    return params_md, metrics_md, changes, max_drop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["summary", "guard"])
    parser.add_argument("--base", required=True, help="git revision to compare HEAD with")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="project folder")
    parser.add_argument("--smoke", type=Path, help="folder of a smoke run (summary only)")
    args = parser.parse_args()
    params_md, metrics_md, changes, max_drop = compare(args.base, args.repo)
    if args.command == "summary":
        smoke_md = dvc("metrics", "show", "--md", cwd=args.smoke) if args.smoke else None
        environment_md = environment_section(
            recorded_environments(args.base, args.repo), recorded_environments("HEAD", args.repo), max_drop
        )
        print(summary_markdown(args.base, params_md, metrics_md, changes, max_drop, smoke_md, environment_md))
        return
    failures = guard_failures(changes, max_drop)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"accuracy guard passed: no model fell by more than {max_drop} pp against {args.base}")


if __name__ == "__main__":
    run(main)
