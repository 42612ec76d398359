"""Classify your own digit images with a trained model or the ensemble, preprocessed the way MNIST was made.

    python -m mnist_tools.predict --model models/lenet.pt a.png digits/ 'scans/*.png' [--top 3] [--format csv]
    python -m mnist_tools.predict --ensemble digits/   # the members and weights in models/ensemble.json

Inputs are image files, folders (their image files, sorted by name, not recursive) or glob patterns
(quoted ones are expanded here; ** reaches into subfolders). Image files: .png .jpg .jpeg .bmp .gif
.tif .tiff .webp, any case. Any size, colour or background: grayscale; invert when the background
is light; crop to the ink; scale to fit 20x20 keeping the aspect ratio; paste into 28x28 with the
centre of mass at the centre. Images are read one by one and classified --batch-size at a time.
Output is in input order, one line (text, json) or row (csv) per image; an unreadable file gets one
`error:` line on stderr, the others are still classified, and the exit status is 1.
csv columns: path,digit,probability, then digit_2,probability_2 ... up to --top.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from mnist_pipeline.artifacts import ModelFile, load_model
from mnist_pipeline.cli import run
from mnist_pipeline.ensembling import EnsembleFile, combine
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.inference import predict_logits
from mnist_pipeline.params import load_params
from mnist_pipeline.runtime import setup_process

MAX_PIXELS = 25_000_000  # larger images are refused as possible decompression bombs
MAX_FILE_BYTES = 50 * 1024 * 1024
INK_THRESHOLD = 0.25  # share of the darkest-to-brightest range that counts as ink
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)  # what folders and patterns pick
FORMATS = ("text", "json", "csv")

Member = tuple[torch.nn.Module, ModelFile]  # a loaded model and its file's record, as load_model returns them


class ImageError(PipelineError):
    """An input image that cannot be classified; the message names the file."""


def is_image_file(path: Path) -> bool:
    """A file whose suffix names an image format; hidden files such as macOS's ._x.png are not images."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def collect_images(inputs: Iterable[str]) -> list[Path]:
    """Image paths in input order: a file as named, a folder's images by name, a pattern's sorted matches.

    A named file is kept even when it is missing or not an image, so that it gets its own error line
    later; a folder or pattern that yields no image file is an error for the whole run.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if is_image_file(p))
            kind = "folder"
        elif not path.exists() and any(c in item for c in "*?["):  # quoted for the shell, so left to us
            found = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if is_image_file(Path(p))]
            kind = "pattern"
        else:
            paths.append(path)
            continue
        if not found:
            raise PipelineError(
                f"{kind} {item} has no image files ({' '.join(IMAGE_SUFFIXES)}) (fix: check the path)"
            )
        paths.extend(found)
    return paths


def read_grayscale(path: Path) -> torch.Tensor:
    """(H, W) float in [0, 1] from any image file Pillow reads; transparency is laid on white."""
    if not path.is_file():
        raise ImageError(f"{path}: no such file (fix: check the path)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: file is larger than {MAX_FILE_BYTES // 2**20} MiB (fix: resize it first)")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.mode in ("RGBA", "LA", "P"):
                    image = image.convert("RGBA")
                    background = Image.new("RGBA", image.size, "white")
                    image = Image.alpha_composite(background, image)
                gray = ImageOps.grayscale(image.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{path}: more than {MAX_PIXELS:,} pixels, refused as a possible decompression bomb "
            "(fix: scale it down first)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: not an image Pillow can read (fix: pass PNG, JPEG, BMP, GIF, TIFF or WebP files)"
        ) from None
    except OSError as e:
        raise ImageError(f"{path}: unreadable image ({e}) (fix: check that the file is whole)") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    return TF.pil_to_tensor(gray)[0].float() / 255


def to_mnist(gray: torch.Tensor) -> torch.Tensor:
    """(H, W) float in [0, 1] → (28, 28) uint8, white digit on black, as MNIST was prepared."""
    border = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.median() > 0.5:  # light background: make the ink bright
        gray = 1 - gray
    low, high = gray.min(), gray.max()
    if high - low < 0.1:
        raise ValueError(
            "no digit found: the image is blank "
            "(fix: pass an image with one dark-on-light or light-on-dark digit)"
        )
    ink = (gray - low) / (high - low)
    rows = torch.nonzero((ink > INK_THRESHOLD).any(1)).flatten()
    cols = torch.nonzero((ink > INK_THRESHOLD).any(0)).flatten()
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    crop = crop * (crop > INK_THRESHOLD / 2)  # drop faint background noise
    h, w = crop.shape
    scale = 20 / max(h, w)
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    digit = TF.resize(crop[None], size, antialias=True)[0].clamp(0, 1)  # (h', w') fits in 20x20
    total = digit.sum()
    ys, xs = torch.arange(size[0]).float(), torch.arange(size[1]).float()
    cy, cx = (digit.sum(1) * ys).sum() / total, (digit.sum(0) * xs).sum() / total
    top = int(min(max(round(13.5 - cy.item()), 0), 28 - size[0]))
    left = int(min(max(round(13.5 - cx.item()), 0), 28 - size[1]))
    canvas = torch.zeros(28, 28)
    canvas[top : top + size[0], left : left + size[1]] = digit
    return (canvas * 255).round().to(torch.uint8)


def load_image(path: Path) -> torch.Tensor:
    """(28, 28) uint8 MNIST-style digit from an image file, or ImageError naming the file."""
    gray = read_grayscale(path)
    try:
        return to_mnist(gray)
    except ValueError as e:
        raise ImageError(f"{path}: {e}") from None


@dataclass(frozen=True)
class Ensemble:
    """What the ensemble stage chose on val (models/ensemble.json): member weights and temperatures."""

    weights: dict[str, float]
    temperatures: dict[str, float]


def probabilities(
    members: list[Member], digits: torch.Tensor, ensemble: Ensemble | None = None
) -> torch.Tensor:
    """(N, 10) probabilities of (N, 28, 28) uint8 digits: each model as scored (test-time shifts as its
    file says), combined with the ensemble's weights and temperatures when there are several."""
    batch = max(len(digits), 1)
    logits = {
        record.name: predict_logits(model, digits, batch, record.preprocessing, record.test_shifts)
        for model, record in members
    }
    if ensemble is None:
        (only,) = logits.values()
        return only.softmax(1)
    return combine(logits, ensemble.weights, ensemble.temperatures).exp()


def rank(probs: torch.Tensor, top: int) -> list[list[tuple[int, float]]]:
    """The `top` most likely (digit, probability) pairs of each row of (N, 10) probabilities."""
    values, indices = probs.topk(top, dim=1)
    return [
        [(int(i), float(v)) for i, v in zip(row_i, row_v, strict=True)]
        for row_i, row_v in zip(indices, values, strict=True)
    ]


def classify(
    model: torch.nn.Module, record: ModelFile, digits: torch.Tensor, top: int
) -> list[list[tuple[int, float]]]:
    """For (N, 28, 28) uint8 digits, the `top` most likely (digit, probability) pairs of each."""
    return rank(probabilities([(model, record)], digits), top)


def predict_paths(
    paths: Iterable[Path], members: list[Member], batch_size: int, top: int, ensemble: Ensemble | None = None
) -> Iterator[tuple[Path, list[tuple[int, float]] | ImageError]]:
    """(path, ranked digits) per image or (path, ImageError) per unreadable file, in input order.

    Images are read one at a time, since they differ in size, and classified batch_size at a time.
    """
    pending: list[tuple[Path, torch.Tensor | ImageError]] = []

    def flush() -> Iterator[tuple[Path, list[tuple[int, float]] | ImageError]]:
        digits = [x for _, x in pending if isinstance(x, torch.Tensor)]
        ranked = iter(rank(probabilities(members, torch.stack(digits), ensemble), top) if digits else [])
        for path, x in pending:
            yield path, next(ranked) if isinstance(x, torch.Tensor) else x
        pending.clear()

    count = 0
    for path in paths:
        try:
            pending.append((path, load_image(path)))
            count += 1
        except ImageError as e:
            pending.append((path, e))
        if count == batch_size:
            yield from flush()
            count = 0
    yield from flush()


def read_ensemble(path: Path) -> Ensemble:
    """The ensemble stage's choice (models/ensemble.json, an EnsembleFile); any other file names the fix."""
    record = EnsembleFile.load(path)
    return Ensemble(record.members, record.temperatures)


def missing_model(path: Path, names: list[str]) -> str:
    """Why a model file is missing, by its name (models/<name>.pt), with the names MODEL= takes."""
    name = path.stem
    choices = f"{', '.join(names)} or ensemble" if names else "see models: in params.yaml, or ensemble"
    if names and name not in names:
        return (
            f"{path} not found: params.yaml has no model {name!r}, so no stage train@{name} writes it "
            f"(fix: name one of {choices})"
        )
    return (
        f"{path} not found: stage train@{name} writes it (fix: train it with `dvc repro train@{name}`, "
        f"or fetch it with `make pull`; the models are {choices})"
    )


def load_members(
    model_file: Path | None, ensemble: Ensemble | None, models_dir: Path, names: list[str] | None = None
) -> list[Member]:
    """The one model named, or the ensemble's members from models_dir; a missing file names the fix.

    names: the models in params.yaml, which a missing model file's error lists.
    """
    names = names or []
    if model_file is not None:
        if not model_file.is_file():
            raise PipelineError(missing_model(model_file, names))
        return [load_model(model_file)]  # the fix names train@ and the file's stem
    assert ensemble is not None
    members = []
    for name in ensemble.weights:
        path = models_dir / f"{name}.pt"
        if not path.is_file():
            raise PipelineError(
                f"{path} not found: the ensemble combines {', '.join(ensemble.weights)} "
                "(fix: train the models with `dvc repro`, or fetch them with `make pull`)"
            )
        members.append(load_model(path, made_by=f"train@{name}"))
    return members


class Writer:
    """Prints ranked digits in one of FORMATS; csv through the csv module (it quotes paths with commas)."""

    def __init__(self, fmt: str, top: int) -> None:
        self.fmt = fmt
        if fmt == "csv":
            self.csv = csv.writer(sys.stdout, lineterminator="\n")
            extra = [f"{name}_{k}" for k in range(2, top + 1) for name in ("digit", "probability")]
            self.csv.writerow(["path", "digit", "probability", *extra])

    def write(self, path: Path, ranked: list[tuple[int, float]]) -> None:
        """One line or row for one image."""
        if self.fmt == "json":
            predictions = [{"digit": d, "probability": round(p, 4)} for d, p in ranked]
            print(json.dumps({"path": str(path), "predictions": predictions}))
        elif self.fmt == "csv":
            self.csv.writerow([str(path), *(v for d, p in ranked for v in (d, f"{p:.4f}"))])
        else:
            print(f"{path}\t" + "\t".join(f"{d} ({p:.3f})" for d, p in ranked))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_tools.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="model file, e.g. models/lenet.pt")
    which.add_argument(
        "--ensemble",
        action="store_true",
        help="combine the members the ensemble stage chose, with its weights (--members-file)",
    )
    parser.add_argument(
        "--members-file",
        type=Path,
        default=Path("models/ensemble.json"),
        help="the ensemble stage's members, weights and temperatures",
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file whose numerics mode to run in"
    )
    parser.add_argument(
        "--models-dir", type=Path, default=Path("models"), help="folder of the ensemble's <model>.pt files"
    )
    parser.add_argument("--top", type=int, default=1, help="how many digits to list per image (1-10)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text: path<TAB>digit (probability); json: one object per line; "
        "csv: a header, then a row per image",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    args = parser.parse_args()
    if not 1 <= args.top <= 10:
        raise PipelineError(f"--top {args.top} (TOP=): there are 10 digits (fix: a number from 1 to 10)")
    if args.batch_size < 1:
        raise PipelineError(f"--batch-size {args.batch_size}: no images per pass (fix: 1 or more)")
    # the kernels and threads the evaluate stage scored with; the CPU's own where the params file sets none
    project = load_params(args.params) if args.params.is_file() else {}
    if {"numerics", "train"} <= project.keys():
        setup_process(project)
    paths = collect_images(args.images)
    ensemble = read_ensemble(args.members_file) if args.ensemble else None
    members = load_members(args.model, ensemble, args.models_dir, list(project.get("models") or {}))
    writer = Writer(args.format, args.top)
    failed = 0
    for path, result in predict_paths(paths, members, args.batch_size, args.top, ensemble):
        if isinstance(result, ImageError):
            print(f"error: {result}", file=sys.stderr)
            failed += 1
        else:
            writer.write(path, result)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    run(main)
