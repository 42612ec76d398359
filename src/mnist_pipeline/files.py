"""The pipeline's files: one atomic writer for every output, digests, readers naming a file's stage."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_pipeline.errors import PipelineError


def write_atomic(path: Path, write: Callable[[Path], None], staged_name: str | None = None) -> None:
    """Have write(staged) make the file, in a private folder beside path, then rename it into place.

    A reader (`dvc plots show` while training runs) sees the old file or the new one, never half of
    one, and a failed write leaves the old file. staged_name is the name the file is written under:
    torch.save records it inside the zip, so it decides the file's bytes (default: path's own name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as folder:
        staged = Path(folder) / (staged_name or path.name)
        write(staged)
        os.replace(staged, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """A metrics-style JSON file: indented, newline-terminated."""

    def dump(staged: Path) -> None:
        with staged.open("w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")

    write_atomic(path, dump)


def write_text(path: Path, text: str) -> None:
    """A text file (Markdown, a marker)."""
    write_atomic(path, lambda staged: staged.write_text(text))


def write_csv(frame: Any, path: Path, float_format: str | None = None) -> None:
    """A pandas DataFrame as CSV without its index (float_format: e.g. "%.6g" for 6 significant digits)."""
    write_atomic(path, lambda staged: frame.to_csv(staged, index=False, float_format=float_format))


def save_torch(obj: Any, path: Path, staged_name: str | None = None) -> None:
    """torch.save(obj) to path (staged_name: see write_atomic)."""
    import torch  # ~1 s: only for the stages that write tensors

    write_atomic(path, lambda staged: torch.save(obj, staged), staged_name)


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


def copy_file(source: Path, dest: Path, made_by: str) -> None:
    """Copy source, which stage made_by wrote, to dest byte for byte; a missing source names that stage."""
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise missing_input(source, made_by) from None
    write_atomic(dest, lambda staged: staged.write_bytes(data))


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
