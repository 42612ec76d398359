"""Model files and resumable-training checkpoints: plain tensors and values, loaded with weights_only=True."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import file_digest, fingerprint, save_torch
from mnist_pipeline.inference import Preprocessing, predict_logits
from mnist_pipeline.models import MODELS, build_model, unknown_architecture

MODEL_FORMAT = "mnist-pipeline-model/4"  # /4: the digest of its own contents
CHECKPOINT_FORMAT = "mnist-pipeline-checkpoint/1"
TORCH_HEADERS = (b"PK\x03\x04", b"\x80")  # how torch.save's zip files and pickles (protocol 2+) begin
MAX_SNIFF_BYTES = 1 << 20  # a refused file larger than this is not read whole to say what it is
PREDICT_BATCH = 250  # images per forward pass in ModelFile.predict: evaluate.batch_size in params.yaml


class ModelFileError(PipelineError):
    """A file that is not one of our model files, or not one this version can read."""


def _foreign_file(path: Path, head: bytes, fix: str) -> str:
    """Why a file that torch.save did not write is refused, and the fix; the ensemble's JSON by name."""
    saved = None
    if head.lstrip()[:1] in (b"{", b"[") and path.stat().st_size <= MAX_SNIFF_BYTES:
        try:
            saved = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    if isinstance(saved, dict) and isinstance(saved.get("members"), dict) and "temperatures" in saved:
        member = next(iter(saved["members"]), None)
        example = f", or load one member's model file, e.g. {path.parent / member}.pt" if member else ""
        return (
            f"{path} is not a model file: it is the ensemble stage's JSON record of the members it combines "
            "and their weights, which holds no weights of its own (fix: classify images with the ensemble by "
            f"`make predict MODEL=ensemble IMAGES=...` or `python -m mnist_tools.predict --ensemble "
            f"--members-file {path} ...`{example})"
        )
    what = "JSON" if saved is not None else f"a file that starts with {head[:16]!r}"
    return f"{path} is not a model file of this project: it is {what}, not a file torch.save wrote {fix}"


def repair_hint(made_by: str) -> str:
    """How to replace a corrupt copy of a file that DVC tracks: its cache object is most likely bad too."""
    return (
        f"(fix: `make verify` names the bad copy and its DVC cache object; remove both, then `make pull` or "
        f"`dvc repro -f {made_by}`)"
    )


def content_digest(saved: dict[str, Any]) -> str:
    """sha256 of a model file's contents: each tensor's name, dtype, shape and bytes, then the rest as JSON.

    Recomputed on load, it catches a file changed after it was written (a flipped bit in a copy or in
    DVC's cache) that torch.load would read without complaint: torch checks no checksum of tensor data.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(saved["weights"].items()):
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    rest = {key: value for key, value in saved.items() if key not in ("weights", "digest")}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    return digest.hexdigest()


def package_digest() -> str:
    """Digest of the pipeline core's source, architectures included, so that a code change invalidates old
    checkpoints."""
    root = Path(__file__).parent
    files = sorted(root.rglob("*.py"))
    return fingerprint(*[(p.relative_to(root).as_posix(), file_digest(p)) for p in files])


def _atomic_save(obj: Any, path: Path) -> None:
    # written as <name>.tmp, the name torch.save records inside the zip: format /3 files were written so,
    # and the same name keeps reruns byte-identical to them
    save_torch(obj, path, staged_name=path.name + ".tmp")


class FileCheckpointer:
    """Keeps fit_epochs' per-epoch state in one file, ignored unless its fingerprint matches this run's."""

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
            print(
                f"ignoring unreadable checkpoint {self.path} ({type(e).__name__}); starting fresh",
                file=sys.stderr,
            )
            return None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            print(f"ignoring {self.path}: not a training checkpoint; starting fresh", file=sys.stderr)
            return None
        if saved.get("fingerprint") != self.run_fingerprint:
            print(
                f"ignoring {self.path}: made with other params, data or code; starting fresh", file=sys.stderr
            )
            return None
        return saved["state"]

    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint atomically."""
        _atomic_save(
            {"format": CHECKPOINT_FORMAT, "fingerprint": self.run_fingerprint, "state": state}, self.path
        )

    def remove(self) -> None:
        """Delete the checkpoint once the stage's outputs are written."""
        self.path.unlink(missing_ok=True)


def _read_model_dict(path: Path, made_by: str) -> dict[str, Any]:
    """The dict a model file holds, read with weights_only; a file that is not one of ours is refused."""
    fix = f"(fix: train it with `dvc repro {made_by}`, or fetch it with `dvc pull` or `dvc artifacts get`)"
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise ModelFileError(f"{path} not found: stage {made_by} writes it {fix}") from None
    # anything else, JSON or text say, would reach torch's unpickler and be called Python objects
    if head and not head.startswith(TORCH_HEADERS):
        raise ModelFileError(_foreign_file(path, head, fix))
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises retrying with weights_only=False, which would run the file's code
        raise ModelFileError(
            f"{path} is not a model file of this project: it holds Python objects, not just tensors and "
            "values; it was not loaded and must not be loaded with weights_only=False, which runs any "
            f"code it carries {fix}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFileError(
            f"{path} is not a model file of this project, or a corrupt copy of one: torch cannot read it "
            f"({first}) {repair_hint(made_by)}"
        ) from None
    if not (isinstance(saved, dict) and str(saved.get("format", "")).startswith("mnist-pipeline-model/")):
        raise ModelFileError(f"{path} is not a model file of this project (no '{MODEL_FORMAT}' header) {fix}")
    return saved


# The fields of a model file and the type each must have (the weights are checked by load_state_dict).
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "arch": str,
    "weights": dict,
    "preprocessing": dict,
    "recipe": dict,
    "seed": int,
    "data": dict,
    "environment": dict,
    "epochs_run": int,
    "best_epoch": int,
    "test_shifts": bool,
    "val_scores": dict,
}


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A trained model as one file: weights, how to feed them, the recipe, seed, data and machine behind them.

    Saved as a dict of tensors and plain values (no classes), so that torch.load(weights_only=True)
    reads it and a model fetched with `dvc artifacts get` explains itself.
    """

    name: str  # the model's name under models: in params.yaml
    arch: str  # its name in the model registry
    weights: dict[str, torch.Tensor]  # state_dict, on the CPU
    preprocessing: Preprocessing
    recipe: dict[str, Any]  # models.<name> of params.yaml as trained, defaults filled in
    seed: int
    data: dict[str, str]  # split ("train", "val") → md5 of data/processed/<split>.pt, as dvc.lock records it
    environment: dict[str, Any]  # environment.bit_class() of the training run: what decided its bits
    epochs_run: int
    best_epoch: int  # the epoch whose weights these are (best val accuracy)
    test_shifts: bool  # predict by the mean softmax over the image and its 1-pixel shifts (chosen on val)
    val_scores: dict[str, dict[str, float]]  # "plain" / "shifted" → val accuracy and loss, as far as scored

    def save(self, path: Path) -> None:
        """Write the file atomically."""
        record = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        record["preprocessing"] = dataclasses.asdict(self.preprocessing)
        # plain JSON values: torch.__version__, say, is a str subclass that a weights_only load refuses
        for key in ("recipe", "data", "environment", "val_scores"):
            record[key] = json.loads(json.dumps(record[key]))
        saved = {"format": MODEL_FORMAT, **record}
        _atomic_save({**saved, "digest": content_digest(saved)}, Path(path))

    @classmethod
    def load(cls, path: Path, made_by: str | None = None) -> ModelFile:
        """Read a file that save() wrote; anything else is a ModelFileError saying what it is and what to do.

        made_by names the stage that writes the file, for the fix (default: train@ and the file's stem).
        A file whose contents no longer match the digest it was written with is refused.
        """
        path = Path(path)
        made_by = made_by or f"train@{path.stem}"
        saved = _read_model_dict(path, made_by)
        if saved["format"] != MODEL_FORMAT:
            raise ModelFileError(
                f"{path} is a {saved['format']} file; this version reads {MODEL_FORMAT} "
                f"(fix: retrain it with `dvc repro -f {made_by}`)"
            )
        wrong = [key for key, kind in _FIELDS.items() if not isinstance(saved.get(key), kind)]
        wrong += [] if isinstance(saved.get("digest"), str) else ["digest"]
        if wrong:
            raise ModelFileError(
                f"{path} lacks or mistypes {', '.join(wrong)} (fix: retrain it with `dvc repro -f {made_by}`)"
            )
        if not all(isinstance(t, torch.Tensor) for t in saved["weights"].values()):
            raise ModelFileError(f"{path} holds weights that are not tensors {repair_hint(made_by)}")
        if content_digest(saved) != saved["digest"]:
            raise ModelFileError(
                f"{path} is corrupt: its contents no longer match the digest it was written with "
                f"{repair_hint(made_by)}"
            )
        if saved["arch"] not in MODELS:
            raise ModelFileError(unknown_architecture(saved["arch"], str(path)))
        try:
            preprocessing = Preprocessing(**saved["preprocessing"])
        except TypeError:
            raise ModelFileError(
                f"{path} has a malformed preprocessing record (fix: retrain it with `dvc repro -f {made_by}`)"
            ) from None
        return cls(**{**{key: saved[key] for key in _FIELDS}, "preprocessing": preprocessing})

    def build(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model with these weights, on the device, in the memory format its preprocessing names."""
        model = build_model(self.arch)
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ModelFileError(
                f"model {self.name!r}: weights do not fit architecture {self.arch!r} ({first}) "
                f"(fix: retrain it with `dvc repro -f train@{self.name}`)"
            ) from None
        return self.preprocessing.prepare(model.to(device))

    def module(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model ready to run: build() in eval mode; its input is preprocessing.input(images).

        For predictions as the evaluate stage makes them, test-time shifts included, use predict():

            >>> from mnist_pipeline.artifacts import ModelFile
            >>> from mnist_pipeline.data import load_split
            >>> images, labels = load_split("data/processed/test.pt")  # (N, 28, 28) uint8, (N,) int64
            >>> record = ModelFile.load("models/lenet.pt")
            >>> model = record.module()  # a torch.nn.Module in eval mode, on the CPU
            >>> logits = model(record.preprocessing.input(images[:8]))  # one plain pass: (8, 10)
            >>> probs = record.predict(images[:8], model)  # (8, 10) probabilities, shifts as the file says
            >>> probs.argmax(1)  # the predicted digits
        """
        return self.build(device).eval()

    def predict(
        self, images: torch.Tensor, model: nn.Module | None = None, batch_size: int = PREDICT_BATCH
    ) -> torch.Tensor:
        """(N, 10) float32 class probabilities on the CPU of (N, 28, 28) or (N, 1, 28, 28) uint8 images.

        Scored as the evaluate stage scores this file (inference.predict_logits): its preprocessing, and
        with test_shifts the mean softmax over each image and its four 1-pixel shifts. Bit for bit the
        softmax of the stage's logits under the same numerics (environment.pin_numerics) and batch_size.
        model: this file's module(), to reuse across calls (built when None; its device is used).
        """
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) not in ((28, 28), (1, 28, 28)):
            raise PipelineError(
                f"model {self.name!r} takes (N, 28, 28) or (N, 1, 28, 28) uint8 images, not "
                f"{tuple(images.shape)} {images.dtype} (fix: pixels 0-255 as MNIST has them, e.g. "
                "(x * 255).round().to(torch.uint8) for floats in [0, 1])"
            )
        if images.dim() == 4:
            images = images[:, 0]
        model = self.module() if model is None else model
        return predict_logits(model, images, batch_size, self.preprocessing, self.test_shifts).softmax(1)


def load_model(
    path: Path, device: torch.device | str = "cpu", made_by: str | None = None
) -> tuple[nn.Module, ModelFile]:
    """The model a file holds, built on the device, and the file's record."""
    record = ModelFile.load(path, made_by)
    return record.build(device), record
