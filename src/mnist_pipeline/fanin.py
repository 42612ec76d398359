"""The fan-in stages' inputs: one file per model of params.yaml, each kind named by one pattern.

    python stages/summary.py --models lenet mlp --metrics 'metrics/{model}.json' ...

In dvc.yaml a fan-in stage's command says `${fan_in}`, which DVC expands to `--models` and the names that
`make dvc-yaml` wrote from params.yaml: the command, and so the stage's dvc.lock entry, changes when a
model is added, removed or moved. The stage checks the names against params.yaml, so a dvc.yaml that was
not rewritten after params.yaml's models changed stops the run with the fix.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import model_names

PLACEHOLDER = "{model}"


def file_pattern(text: str) -> str:
    """An argparse type: a path with {model} where each model's name goes."""
    if PLACEHOLDER not in text:
        raise argparse.ArgumentTypeError(f"{text!r} has no {PLACEHOLDER} for each model's name")
    return text


def add_model_arguments(parser: argparse.ArgumentParser, patterns: dict[str, str]) -> None:
    """--models, then one required path pattern per option (option → what each model's file holds)."""
    parser.add_argument(
        "--models", required=True, nargs="+", help="params.yaml's models, in its order (dvc.yaml: ${fan_in})"
    )
    for option, holds in patterns.items():
        parser.add_argument(
            option, required=True, type=file_pattern, help=f"{holds}, with {PLACEHOLDER} for the model's name"
        )


def model_files(pattern: str, names: list[str]) -> dict[str, Path]:
    """Model name → its file, in the names' order."""
    return {name: Path(pattern.replace(PLACEHOLDER, name)) for name in names}


def check_models(names: list[str], config: dict[str, Any]) -> None:
    """Stop unless the names are params.yaml's models in its order: otherwise dvc.yaml is stale."""
    listed = model_names(config)
    if names != listed:
        raise PipelineError(
            f"dvc.yaml is stale: it passes the models {', '.join(names)}, but params.yaml's models: are "
            f"{', '.join(listed)} (fix: run `make dvc-yaml`, then `dvc repro`)"
        )


@dataclass(frozen=True)
class Copy:
    """One file the publish stage copies: from a stage's cached output to the path git carries."""

    stage: str  # the stage that writes source, for the error when it is missing
    source: Path
    dest: Path


def planned_copies(specs: list[list[str]], names: list[str]) -> list[Copy]:
    """Each (stage, from, to) spec once per model when all three name {model}, else once as it is."""
    copies = []
    for spec in specs:
        per_model = [PLACEHOLDER in part for part in spec]
        if any(per_model) and not all(per_model):
            raise PipelineError(
                f"--copy {' '.join(spec)}: {PLACEHOLDER} must be in the stage, the source and the "
                "destination, or in none (fix: correct the publish stage's command in dvc.yaml)"
            )
        for name in names if all(per_model) else [""]:
            stage, source, dest = (part.replace(PLACEHOLDER, name) for part in spec)
            copies.append(Copy(stage, Path(source), Path(dest)))
    return copies


def restorable(copies: list[Copy]) -> list[Path]:
    """What `git checkout` brings back after the copies were deleted: each destination's folder, except
    a top-level one (metrics/ holds other stages' files too), where the files themselves."""
    paths: list[Path] = []
    for copy in copies:
        path = copy.dest.parent if len(copy.dest.parent.parts) > 1 else copy.dest
        if path not in paths:
            paths.append(path)
    return paths
