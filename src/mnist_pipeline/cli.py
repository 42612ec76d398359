"""What every stage script shares as a command: params checked first, one-line errors that say how to recover.

Process set-up lives in runtime.py, files in files.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import check_params, load_params


def load_checked_params(path: str | Path, architectures: Iterable[str] | None = None) -> dict[str, Any]:
    """Read params.yaml and validate every section, so a typo anywhere stops the first stage that runs.

    Stages that build models pass the registry names so that arch typos are caught too; the data
    stages do not import the registry, so that editing a model does not re-download MNIST.
    """
    config = load_params(path)
    check_params(config, architectures)
    return config


@dataclass
class _Stage:
    """The DVC stage this process runs, once main() has said so: its name and its git-tracked outputs."""

    name: str = ""
    tracked: tuple[Path, ...] = ()
    resume: str = ""  # what picks an interrupted run up again, if it can be


_stage = _Stage()


def stage_outputs(stage: str, *tracked: Path, resume: str = "") -> None:
    """Name the running DVC stage and its outputs that git tracks (cache: false), for run()'s error line.

    DVC deletes a stage's outputs before its command runs, so a failure leaves them missing: the line
    then says how to get the last committed ones back (`dvc checkout` for the cached, git for the rest).
    """
    _stage.name, _stage.tracked, _stage.resume = stage, tracked, resume


def resume_advice(stage: str, checkpoint: Path) -> str:
    """How to pick an interrupted stage up again, as the run was started: DVC names the experiment
    (DVC_EXP_NAME) for a stage that `dvc exp run` started, and DVC_ROOT is then the project, not the
    temporary copy a queued or --temp experiment runs in."""
    if not os.environ.get("DVC_EXP_NAME"):
        return f"`dvc repro {stage}` resumes after the last finished epoch ({checkpoint})"
    if Path(os.environ.get("DVC_ROOT", ".")).resolve() != Path.cwd().resolve():
        return (
            "this experiment ran in a temporary copy, and its checkpoint went with it: the same "
            "`dvc exp run` command starts it over"
        )
    return f"the same `dvc exp run` command resumes it after the last finished epoch ({checkpoint})"


def restore_hint() -> str:
    """How to get the failed stage's last committed outputs back; empty before stage_outputs()."""
    if not _stage.name:
        return ""
    tracked = f" and `git checkout HEAD -- {' '.join(map(str, _stage.tracked))}`" if _stage.tracked else ""
    return f"; its last committed outputs come back with `dvc checkout {_stage.name}`{tracked}"


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected failures become one line on stderr and exit status 2.

    The line ends with the restore commands of the stage's outputs (stage_outputs). Ctrl-C is one
    line too, with exit status 130 as the shell gives it.
    """
    try:
        main()
    except PipelineError as e:
        print(f"error: {e}{restore_hint()}", file=sys.stderr)
        sys.exit(2)
    # a path given on the command line; the stages' own inputs name their stage
    except FileNotFoundError as e:
        print(
            f"error: {e.filename} not found (fix: check the path, or run the stage that writes it)"
            + restore_hint(),
            file=sys.stderr,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        where = f"{_stage.name} " if _stage.name else ""
        then = f"; {_stage.resume}" if _stage.resume else restore_hint()
        print(f"\ninterrupted: {where}stopped{then}", file=sys.stderr)
        sys.exit(130)
