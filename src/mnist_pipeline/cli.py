"""What every stage script shares: params checked up front, pinned threads, one-line errors."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import check_params, load_params


def load_checked_params(path: str | Path, architectures: Iterable[str] | None = None) -> dict[str, Any]:
    """Read params.yaml and validate every section, so a typo anywhere stops the first stage that runs.

    Stages that build models pass the registry names so that arch typos are caught too; the data
    stages do not import the registry, so that editing a model does not re-download MNIST.
    """
    raw = load_params(path)
    check_params(raw, architectures)
    return raw


def pin_threads(threads: int) -> None:
    """Fix torch's thread count: float reductions, hence results, depend on it."""
    import torch

    torch.set_num_threads(threads)


# glibc mallopt() option numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Have glibc malloc reuse freed tensor memory instead of returning it to the OS; False if not glibc.

    By default each training step's large activations and gradients (MiBs each) are handed back
    to the OS when freed and page-faulted in again on the next step. Measured at batch 128 on
    2 threads: bnnet 24.5 -> 21.4 ms per step, resnet18 -2% to -9%. All three settings are
    needed: setting any one of them freezes glibc's adaptive mmap threshold, and trim alone made
    steps slower. Memory is not numbers: results are bit-identical.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # macOS, Windows, musl
        return False
    settings = (
        (_M_MMAP_THRESHOLD, 256 << 20),
        (_M_TRIM_THRESHOLD, 256 << 20),
        (_M_TOP_PAD, 64 << 20),
    )  # bytes
    return all(mallopt(option, value) == 1 for option, value in settings)


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-serialisable parts: what a checkpoint must match to be resumed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """md5 of a file's bytes (the digest DVC records)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def missing_input(path: Path, stage: str) -> PipelineError:
    """The error for an input file that is not there, naming the stage that writes it."""
    return PipelineError(f"{path} not found: stage {stage} writes it (fix: run `dvc repro {stage}`)")


def metrics_stage(name: str) -> str:
    """The stage that writes metrics/<name>.json: the ensemble's own, evaluate@<name> for a model."""
    return "ensemble" if name == "ensemble" else f"evaluate@{name}"


def read_json(path: Path, made_by: str) -> dict[str, Any]:
    """Read a JSON file that stage made_by wrote; a missing one names that stage."""
    try:
        with path.open() as f:
            return json.load(f)
    except FileNotFoundError:
        raise missing_input(path, made_by) from None


def read_csv(path: Path, made_by: str) -> Any:
    """Read a CSV file that stage made_by wrote, as a pandas DataFrame; a missing one names that stage."""
    import pandas as pd  # ~0.5 s: only for the stages that read CSVs

    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise missing_input(path, made_by) from None


def read_logits(path: Path, made_by: str) -> dict[str, Any]:
    """The "val" and "test" (N, 10) float32 logits that stage made_by saved; a missing file names it."""
    import torch  # ~1 s: only for the stages that read logits

    try:
        saved = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise missing_input(path, made_by) from None
    if not (isinstance(saved, dict) and {"val", "test"} <= set(saved)):
        raise PipelineError(
            f"{path} does not hold val and test logits (fix: rerun it with `dvc repro -f {made_by}`)"
        )
    return saved


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a metrics-style JSON file: indented, newline-terminated, parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_csv(frame: Any, path: Path, scratch: Path) -> None:
    """Write a pandas DataFrame as the stages' CSV (6 significant digits) to path, atomically.

    The file is written in the scratch folder (same filesystem) and renamed into place, so a reader
    of path (`dvc plots show` mid-training) sees the old or the new file, never a partial one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / f".{path.name}.tmp"
    frame.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected failures become one line on stderr and exit status 2."""
    try:
        main()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    # a path given on the command line; the stages' own inputs name their stage
    except FileNotFoundError as e:
        print(
            f"error: {e.filename} not found (fix: check the path, or run the stage that writes it)",
            file=sys.stderr,
        )
        sys.exit(2)
