"""Predict: MNIST-style preprocessing of arbitrary images and a CLI that survives bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from mnist_pipeline.checkpoint import save_model
from mnist_pipeline.models import build_model
from mnist_pipeline.predict import ImageError, load_image, to_mnist


def render_digit(digit: int, size: int = 200, dark_on_light: bool = True, color: str = "black",
                 offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """A digit drawn with Pillow's built-in font on a square canvas."""
    background, ink = ("white", color) if dark_on_light else ("black", "white")
    image = Image.new("RGB", (size, size), background)
    font = ImageFont.load_default(size=size * 0.6)
    ImageDraw.Draw(image).text((size / 2 + offset[0], size / 2 + offset[1]), str(digit), fill=ink, font=font, anchor="mm")
    return image


def center_of_mass(x: torch.Tensor) -> tuple[float, float]:
    x = x.float()
    ys, xs = torch.arange(28).float(), torch.arange(28).float()
    return float((x.sum(1) * ys).sum() / x.sum()), float((x.sum(0) * xs).sum() / x.sum())


def test_digit_is_cropped_scaled_and_centred(tmp_path: Path) -> None:
    path = tmp_path / "seven.png"
    render_digit(7, size=300, offset=(60, -50)).save(path)
    x = load_image(path)
    assert x.shape == (28, 28) and x.dtype == torch.uint8
    rows, cols = torch.nonzero(x.any(1)).flatten(), torch.nonzero(x.any(0)).flatten()
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20
    cy, cx = center_of_mass(x)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert x[0].sum() == 0 and x[:, 0].sum() == 0  # background is black


def test_polarity_and_colour_do_not_matter(tmp_path: Path) -> None:
    variants = {"dark.png": render_digit(3), "light.png": render_digit(3, dark_on_light=False),
                "blue.jpg": render_digit(3, color="navy")}
    digits = []
    for name, image in variants.items():
        image.save(tmp_path / name)
        digits.append(load_image(tmp_path / name).float())
    assert (digits[0] - digits[1]).abs().mean() < 8 and (digits[0] - digits[2]).abs().mean() < 12


def test_transparent_png(tmp_path: Path) -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(50, 10), (50, 90)], fill=(0, 0, 0, 255), width=8)
    image.save(tmp_path / "one.png")
    x = load_image(tmp_path / "one.png")
    assert x[4:24, 12:16].float().mean() > 100 and x[:, :8].sum() == 0


def test_blank_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="no digit found"):
        to_mnist(torch.ones(50, 50))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "lenet.pt"
    save_model(path, "lenet", build_model("lenet").state_dict(),
               {"norm_mean": 0.5, "norm_std": 0.5, "channels_last": False, "epochs_run": 1, "best_epoch": 1})
    return path


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_pipeline.predict", *args], capture_output=True, text=True)


def test_bad_files_are_named_and_the_rest_classified(tmp_path: Path, model_file: Path) -> None:
    good = tmp_path / "good.png"
    render_digit(4).save(good)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    Image.new("1", (6000, 6000), 1).save(tmp_path / "bomb.png")  # 36 Mpixel in a few kB
    bad = ["notes.txt", "empty.png", "blank.png", "bomb.png", "missing.png"]
    result = predict("--model", str(model_file), str(good), *(str(tmp_path / b) for b in bad))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{good}\t")
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad)
    for name, line in zip(bad, errors):
        assert line.startswith(f"error: {tmp_path / name}: ")
    assert "decompression bomb" in errors[3] and "no such file" in errors[4] and "no digit found" in errors[2]


def test_top_and_json(tmp_path: Path, model_file: Path) -> None:
    path = tmp_path / "five.png"
    render_digit(5).save(path)
    result = predict("--model", str(model_file), "--top", "3", "--json", str(path))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["path"] == str(path) and len(record["predictions"]) == 3
    probabilities = [p["probability"] for p in record["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    plain = predict("--model", str(model_file), "--top", "3", str(path))
    assert plain.stdout.count("(") == 3


def test_not_a_model_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    render_digit(1).save(path)
    (tmp_path / "model.pt").write_bytes(b"garbage")
    result = predict("--model", str(tmp_path / "model.pt"), str(path))
    assert result.returncode == 2 and "is not a model file of this project" in result.stderr
