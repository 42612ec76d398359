"""Is dvc.lock the record of a run of the committed params, code and stage commands?

    python -m mnist_tools.lockcheck [--repo DIR] [--md]     # exit 1 when a stage is stale

Works in a clean checkout with no data, models or DVC cache, as in CI. First, dvc.yaml's lines for each
model must be what `make dvc-yaml` writes from params.yaml and the registry (mnist_tools.dvcgen): when
they are not, that one line is the answer. Then a stage is stale when
`dvc status` finds its command, params or a committed file it depends on changed since dvc.lock
was written, when a committed output (metrics, plot CSVs) is not the one dvc.lock records, or when
dvc.lock itself does not add up: a stage's record of its input differs from the record of the stage
that produced it (one stage rerun, the next not), or when a stage depends on a folder of other stages'
outputs. Data and models that are merely absent, or not in the cache, are not staleness.

What changed since the lock was written is `dvc status --json`'s answer; this tool adds what DVC does
not check: the lock's records of one file against each other, committed `cache: false` outputs, the
old and new value of each changed param, and absent data not counted as a change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_tools.dvcgen import stale_message
from mnist_tools.report import dvc

FIX = (
    "run `dvc repro` (set MNIST_MIRROR when offline), then commit dvc.lock together with metrics/ and "
    "plots/, and `dvc push` the data and models"
)


@dataclass(frozen=True)
class StaleStage:
    """A stage whose dvc.lock entry does not describe the committed params, code or outputs."""

    stage: str
    reasons: tuple[str, ...]

    def line(self) -> str:
        """One line naming the stage and every reason."""
        return f"stale: {self.stage}: {'; '.join(self.reasons)}"


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    """params.yaml value at a dotted key such as models.lenet; KeyError when absent."""
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def leaf_changes(old: Any, new: Any, key: str) -> list[str]:
    """`key.leaf old → new` for every leaf that differs between two params values (mappings recursed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for sub in [*old, *(k for k in new if k not in old)]:
            changes += leaf_changes(old.get(sub, _ABSENT), new.get(sub, _ABSENT), f"{key}.{sub}")
        return changes
    if old is _ABSENT and new is _ABSENT:
        return []
    same = old == new and type(old) is type(new)  # 1 vs 1.0 or true vs 1: DVC sees a change too
    return [] if same else [f"{key} {_show(old)} → {_show(new)}"]


def params_changes(locked: dict[str, dict[str, Any]], params_by_file: dict[str, dict[str, Any]]) -> list[str]:
    """Leaf changes between the params a stage's lock entry records and the current params files."""
    changes = []
    for file, keys in sorted(locked.items()):
        current = params_by_file.get(file, {})
        for key, old in keys.items():
            try:
                new = _lookup(current, key)
            except KeyError:
                new = _ABSENT
            changes += leaf_changes(old, new, key)
    return changes


def _git_files(repo: Path) -> set[str]:
    """The files git tracks in repo (the index: committed or staged)."""
    result = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(
            f"`git ls-files` failed in {repo}: {result.stderr.strip()} (fix: run it in a git checkout)"
        )
    return set(result.stdout.splitlines())


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _committed(path: str, tracked: set[str]) -> bool:
    """Whether git tracks the file at path, or any file inside the folder at path."""
    return path in tracked or any(_under(t, path) for t in tracked)


@dataclass(frozen=True)
class LockedFile:
    """An output recorded in dvc.lock: which stage wrote it and its md5 (".dir" suffix for folders)."""

    stage: str
    md5: str


def recorded_outputs(lock: dict[str, Any]) -> dict[str, LockedFile]:
    """Every output path in dvc.lock → the stage that wrote it and its md5."""
    return {
        out["path"]: LockedFile(stage, out.get("md5", ""))
        for stage, entry in lock.get("stages", {}).items()
        for out in entry.get("outs", [])
    }


def consistency_reasons(entry: dict[str, Any], outputs: dict[str, LockedFile]) -> list[str]:
    """Inputs of one stage whose recorded md5 is not what dvc.lock records for the stage that made them.

    DVC compares each stage with the workspace; in a clean checkout without data it cannot see that one
    stage reran and the next did not. Both records are in dvc.lock, so this compares them.
    """
    reasons = []
    for dep in entry.get("deps", []):
        path, md5 = dep["path"], dep.get("md5", "")
        if path in outputs and outputs[path].md5 != md5:
            reasons.append(
                f"{path} is not the one {outputs[path].stage} last wrote (rerun this stage after it)"
            )
    return reasons


def gathering_reasons(deps: list[str], outputs: set[str]) -> list[str]:
    """Folder deps that gather other stages' outputs: their md5 is only checkable with the data, and any
    change in them reruns the stage, so the stages name the files they read instead."""
    return [
        f"dependency {dep} is a folder of other stages' outputs (name the files it reads in dvc.yaml)"
        for dep in deps
        if dep not in outputs and any(_under(out, dep) for out in outputs)
    ]


def status_reasons(
    stage_status: list[Any],
    locked_params: dict[str, dict[str, Any]],
    params_by_file: dict[str, dict[str, Any]],
    produced: set[str],
    tracked: set[str],
    uncached_outs: set[str],
) -> list[str]:
    """Reasons in one stage's `dvc status` entry that concern its command, params, code or committed outputs.

    produced: stage outputs and the folders that gather them (checked by consistency_reasons instead);
    tracked: the files git tracks; uncached_outs: `cache: false` outputs, which belong in git. Cached
    data and models that are absent or not in the cache are not staleness.
    """
    reasons: list[str] = []
    for item in stage_status:
        if item == "changed command":
            reasons.append("the command in dvc.yaml changed")
            continue
        if not isinstance(item, dict):
            reasons.append(str(item))
            continue
        for path, state in item.get("changed deps", {}).items():
            if isinstance(state, dict):  # a params file: DVC 3.67 gives {key: "modified" | "new" | "deleted"}
                changes = params_changes(locked_params, params_by_file)
                keys = [key if isinstance(how, str) else ", ".join(how) for key, how in state.items()]
                reasons.append(f"params {', '.join(changes) if changes else ', '.join(keys)}")
            elif path in produced or any(_under(path, p) for p in produced):
                continue
            elif not _committed(path, tracked):
                reasons.append(f"{path} is not committed")
            else:
                reasons.append(f"{path} changed")
        for path in item.get("changed outs", {}):
            if path not in uncached_outs:
                continue
            if _committed(path, tracked):
                reasons.append(f"committed {path} is not the output dvc.lock records")
            else:
                reasons.append(f"{path} is not committed (a cache: false output belongs in git)")
    return reasons


def declaration_reasons(outs: list[str], deps: list[str], entry: dict[str, Any]) -> list[str]:
    """Outputs and dependencies that dvc.yaml declares and dvc.lock lacks, or the other way round."""
    reasons = []
    for kind, declared in (("output", outs), ("dependency", deps)):
        locked = [item["path"] for item in entry.get("outs" if kind == "output" else "deps", [])]
        reasons += [f"{kind} {path} is not in dvc.lock" for path in declared if path not in locked]
        reasons += [
            f"dvc.lock records {kind} {path}, which dvc.yaml no longer declares"
            for path in locked
            if path not in declared
        ]
    return reasons


def _load_params_files(repo: Path, files: set[str]) -> dict[str, dict[str, Any]]:
    loaded = {}
    for name in files:
        path = repo / name
        if path.is_file():
            with path.open() as f:
                loaded[name] = yaml.safe_load(f) or {}
    return loaded


@dataclass(frozen=True)
class DeclaredStage:
    """A stage as dvc.yaml declares it, foreach resolved: its outputs (and which are cached) and file deps."""

    name: str
    outs: tuple[str, ...]
    uncached_outs: tuple[str, ...]
    deps: tuple[str, ...]


def declared_stages(repo: Path) -> list[DeclaredStage]:
    """Every stage of the project's dvc.yaml, foreach resolved, with its outputs and file deps.

    DVC's Python API, because no DVC command lists each stage's resolved deps and outs with their cache
    flag (`dvc stage list` names the stages only).
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(repo)) as dvc_repo:
            return [
                DeclaredStage(
                    stage.addressing,
                    tuple(str(o.def_path) for o in stage.outs),
                    tuple(str(o.def_path) for o in stage.outs if not o.use_cache),
                    tuple(str(d.def_path) for d in stage.deps if not hasattr(d, "params")),
                )
                for stage in dvc_repo.index.stages
                if stage.cmd
            ]
    except DvcException as e:
        raise PipelineError(
            f"DVC cannot read the pipeline in {repo}: {e} (fix: `dvc repro --dry` shows the problem)"
        ) from None


def dvc_status(repo: Path) -> dict[str, list[Any]]:
    """`dvc status --json`: per stage, what changed since dvc.lock was written (absent data included)."""
    return json.loads(dvc("status", "--json", cwd=repo) or "{}")


def check_lock(repo: Path) -> tuple[list[StaleStage], int]:
    """The stale stages of the project in repo, and how many stages were checked."""
    lock_path = repo / "dvc.lock"
    if not lock_path.is_file():
        raise PipelineError(f"no dvc.lock in {repo} (fix: {FIX})")
    with lock_path.open() as f:
        lock = yaml.safe_load(f) or {}
    stages, status = declared_stages(repo), dvc_status(repo)
    locked = lock.get("stages", {})

    outputs = recorded_outputs(lock)
    tracked = _git_files(repo)
    produced = set(outputs) | {out for stage in stages for out in stage.outs}
    produced |= {dep for stage in stages for dep in stage.deps if any(_under(out, dep) for out in produced)}
    params_files = {file for entry in locked.values() for file in entry.get("params", {})} | {"params.yaml"}
    params_by_file = _load_params_files(repo, params_files)

    stale = []
    for stage in stages:
        if stage.name not in locked:
            stale.append(StaleStage(stage.name, ("not in dvc.lock: it has never run",)))
            continue
        entry = locked[stage.name]
        reasons = declaration_reasons(list(stage.outs), list(stage.deps), entry)
        reasons += status_reasons(
            status.get(stage.name, []),
            entry.get("params", {}),
            params_by_file,
            produced,
            tracked,
            set(stage.uncached_outs),
        )
        reasons += consistency_reasons(entry, outputs)
        reasons += gathering_reasons(list(stage.deps), set(outputs))
        if reasons:
            stale.append(StaleStage(stage.name, tuple(dict.fromkeys(reasons))))
    names = {stage.name for stage in stages}
    for name in sorted(set(locked) - names):
        stale.append(StaleStage(name, ("in dvc.lock but no longer in dvc.yaml",)))
    return stale, len(stages)


def report_text(stale: list[StaleStage], checked: int) -> str:
    """Plain-text verdict: one line per stale stage and the fix, or one line saying all is well."""
    if not stale:
        return f"dvc.lock matches params and code ({checked} stages checked)"
    return "\n".join([s.line() for s in stale] + [f"dvc.lock is stale: {FIX}"])


def report_markdown(stale: list[StaleStage], checked: int) -> str:
    """The lock check as the first section of the pull request's job summary."""
    if not stale:
        return (
            "### ✅ dvc.lock matches params and code\n\n"
            f"All {checked} stages of dvc.yaml are recorded as run.\n"
        )
    rows = ["| stage | why it is stale |", "|---|---|"]
    rows += [f"| `{s.stage}` | {'<br>'.join(s.reasons).replace('|', '&#124;')} |" for s in stale]
    return "\n".join(
        [
            "### ❌ dvc.lock is stale",
            "",
            f"{len(stale)} of {checked} stages do not describe the committed "
            "params, code or outputs: the committed metrics are not results of this commit.",
            "",
            *rows,
            "",
            f"To fix: {FIX}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="project folder")
    parser.add_argument("--md", action="store_true", help="Markdown for a job summary instead of plain lines")
    args = parser.parse_args()
    repo = args.repo.resolve()
    stale_yaml = stale_message(repo) if (repo / "dvc.yaml").is_file() else None
    if stale_yaml:
        print(f"### ❌ dvc.yaml is stale\n\n{stale_yaml}\n" if args.md else stale_yaml)
        sys.exit(1)
    stale, checked = check_lock(repo)
    print(report_markdown(stale, checked) if args.md else report_text(stale, checked))
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    run(main)
