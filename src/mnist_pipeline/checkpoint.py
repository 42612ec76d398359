"""Model files and resumable-training checkpoints, both loaded with weights_only=True."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.models import MODELS, build_model

MODEL_FORMAT = "mnist-pipeline-model/1"
CHECKPOINT_FORMAT = "mnist-pipeline-checkpoint/1"
MODEL_KEYS = {"format", "arch", "state_dict", "norm_mean", "norm_std", "channels_last", "epochs_run", "best_epoch"}


class ModelFileError(PipelineError):
    """A file that is not one of our model files."""


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-serialisable parts: what a checkpoint must match to be resumed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """md5 of a file's bytes (the same digest DVC records)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_digest() -> str:
    """Digest of this package's source, so that a code change invalidates old checkpoints."""
    root = Path(__file__).parent
    return fingerprint(*[(p.name, file_digest(p)) for p in sorted(root.glob("*.py"))])


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous file intact


class FileCheckpointer:
    """Keeps fit()'s state in one file, ignored unless its fingerprint matches this run's."""

    def __init__(self, path: Path, run_fingerprint: str) -> None:
        self.path = Path(path)
        self.run_fingerprint = run_fingerprint

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it belongs to other params, data or code."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
            print(f"ignoring unreadable checkpoint {self.path} ({type(e).__name__}); starting fresh", file=sys.stderr)
            return None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            print(f"ignoring {self.path}: not a training checkpoint; starting fresh", file=sys.stderr)
            return None
        if saved.get("fingerprint") != self.run_fingerprint:
            print(f"ignoring {self.path}: made with other params, data or code; starting fresh", file=sys.stderr)
            return None
        return saved["state"]

    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint atomically."""
        _atomic_save({"format": CHECKPOINT_FORMAT, "fingerprint": self.run_fingerprint, "state": state}, self.path)

    def remove(self) -> None:
        """Delete the checkpoint once the stage's outputs are written."""
        self.path.unlink(missing_ok=True)


def save_model(path: Path, arch: str, state_dict: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Write a model file: weights plus what is needed to rebuild and feed the model."""
    _atomic_save({"format": MODEL_FORMAT, "arch": arch, "state_dict": state_dict, **info}, Path(path))


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a file written by save_model; anything else gets a clear error."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path} not found; train it with `dvc repro train@<model>`") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"{path} is not a model file of this project (refused to load it: {first})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a model file of this project (no '{MODEL_FORMAT}' header)")
    missing = MODEL_KEYS - saved.keys()
    if missing:
        raise ModelFileError(f"{path} lacks {', '.join(sorted(missing))}; retrain it with `dvc repro -f train@<model>`")
    if saved["arch"] not in MODELS:
        raise ModelFileError(f"{path} names unknown architecture {saved['arch']!r}; valid names: {', '.join(sorted(MODELS))}")
    model = build_model(saved["arch"])
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelFileError(f"{path}: weights do not fit architecture {saved['arch']!r} ({first})") from None
    model.to(device)
    if saved["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    info = {k: v for k, v in saved.items() if k not in ("state_dict", "format")}
    return model, info
