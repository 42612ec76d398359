"""Classify your own digit images with a trained model, preprocessed the way MNIST was made.

    python -m mnist_pipeline.predict --model models/lenet.pt a.png b.jpg [--top 3] [--json]

Any size, colour or background: grayscale; invert when the background is light; crop to the ink;
scale to fit 20x20 keeping the aspect ratio; paste into 28x28 with the centre of mass at the centre.
One line per image; an unreadable file gets one error line and the others are still classified.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from mnist_pipeline.checkpoint import load_model
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.training import predict_logits

MAX_PIXELS = 25_000_000  # larger images are refused as possible decompression bombs
MAX_FILE_BYTES = 50 * 1024 * 1024
INK_THRESHOLD = 0.25  # share of the darkest-to-brightest range that counts as ink


class ImageError(PipelineError):
    """An input image that cannot be classified; the message names the file."""


def read_grayscale(path: Path) -> torch.Tensor:
    """(H, W) float in [0, 1] from any image file Pillow reads; transparency is laid on white."""
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: file is larger than {MAX_FILE_BYTES // 2**20} MiB; resize it first")
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
        raise ImageError(f"{path}: more than {MAX_PIXELS:,} pixels, refused as a possible decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except OSError as e:
        raise ImageError(f"{path}: unreadable image ({e})") from None
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
        raise ValueError("no digit found (the image is blank)")
    ink = (gray - low) / (high - low)
    rows = torch.nonzero((ink > INK_THRESHOLD).any(1)).flatten()
    cols = torch.nonzero((ink > INK_THRESHOLD).any(0)).flatten()
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
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
    canvas[top:top + size[0], left:left + size[1]] = digit
    return (canvas * 255).round().to(torch.uint8)


def load_image(path: Path) -> torch.Tensor:
    """(28, 28) uint8 MNIST-style digit from an image file, or ImageError naming the file."""
    gray = read_grayscale(path)
    try:
        return to_mnist(gray)
    except ValueError as e:
        raise ImageError(f"{path}: {e}") from None


def classify(model: torch.nn.Module, info: dict, digits: torch.Tensor, top: int) -> list[list[tuple[int, float]]]:
    """For (N, 28, 28) uint8 digits, the `top` most likely (digit, probability) pairs of each."""
    probs = predict_logits(model, digits, 256, info["norm_mean"], info["norm_std"], info["channels_last"]).softmax(1)
    values, indices = probs.topk(top, dim=1)
    return [[(int(i), float(v)) for i, v in zip(row_i, row_v)] for row_i, row_v in zip(indices, values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    parser.add_argument("--model", required=True, type=Path, help="model file, e.g. models/lenet.pt")
    parser.add_argument("--top", type=int, default=1, help="how many digits to list per image (1-10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = parser.parse_args()
    if not 1 <= args.top <= 10:
        parser.error(f"--top {args.top}: must be between 1 and 10")
    try:
        model, info = load_model(args.model)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    failed = 0
    for path in args.images:
        try:
            digit = load_image(path)
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        ranked = classify(model, info, digit[None], args.top)[0]
        if args.json:
            print(json.dumps({"path": str(path), "predictions": [{"digit": d, "probability": round(p, 4)} for d, p in ranked]}))
        else:
            print(f"{path}\t" + "\t".join(f"{d} ({p:.3f})" for d, p in ranked))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
