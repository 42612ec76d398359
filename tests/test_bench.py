"""The benchmark's two training paths run on the same images (tiny generated IDX files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mnist_pipeline import bench
from mnist_pipeline.bench import FORMATS, format_rates, seed_loader, throughput
from mnist_pipeline.data import load_raw
from mnist_pipeline.params import load_params, model_params

PARAMS = Path(__file__).parents[1] / "params.yaml"


def as_bytes(images: torch.Tensor) -> list[bytes]:
    """Sorted raw bytes of (N, 28, 28) uint8 images: compares two sets of images regardless of order."""
    return sorted(image.numpy().tobytes() for image in images)


def unnormalise(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(B, 1, 28, 28) normalised floats back to (B, 28, 28) uint8 pixels."""
    return (x.squeeze(1) * std + mean).mul(255).round().to(torch.uint8)


@pytest.mark.parametrize("name", ["lenet", "cnn2"])
def test_seed_loader_yields_the_first_images_with_the_seed_normalisation(tiny_raw: Path, name: str) -> None:
    cfg = bench.SEED_LOADERS[name]
    batches = list(seed_loader(tiny_raw, name, images=100))
    assert [len(y) for _, y in batches] == [cfg["batch_size"]] * (100 // cfg["batch_size"]) + \
        ([100 % cfg["batch_size"]] if 100 % cfg["batch_size"] else [])
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    images, labels = load_raw(tiny_raw, train=True)
    assert as_bytes(unnormalise(x, cfg["mean"], cfg["std"])) == as_bytes(images[:100])
    assert sorted(y.tolist()) == sorted(labels[:100].tolist())


def test_seed_loader_rotates_when_the_seed_did(tiny_raw: Path) -> None:
    cfg = bench.SEED_LOADERS["resnet18"]
    assert cfg["rotate"] == 10 and cfg["workers"] == 2  # seed 000: RandomRotation(10), two loader workers
    x = torch.cat([batch for batch, _ in seed_loader(tiny_raw, "resnet18", images=40)])
    rotated = set(as_bytes(unnormalise(x, cfg["mean"], cfg["std"])))
    plain = set(as_bytes(load_raw(tiny_raw, train=True)[0][:40]))
    # an angle under ~1.5 degrees moves no pixel of a 28x28 image (nearest neighbour): most must differ
    assert len(rotated - plain) >= 20


def test_both_paths_train_on_the_same_images(tiny_raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[bytes]] = {}

    def seed_epoch(model, optimizer, loader) -> int:
        x = torch.cat([batch for batch, _ in loader])
        seen["seed"] = as_bytes(unnormalise(x, 0.0, 1.0))
        return len(x)

    def our_rate(images: torch.Tensor, labels: torch.Tensor, recipe) -> float:
        seen["ours"] = as_bytes(images)
        seen["recipe"] = recipe
        return 1.0

    monkeypatch.setattr(bench, "seed_epoch", seed_epoch)
    monkeypatch.setattr(bench, "our_rate", our_rate)
    committed = model_params(load_params(PARAMS), "cnn2")
    throughput(tiny_raw, "cnn2", images=64, committed=committed)
    assert len(seen["ours"]) == 64 and seen["seed"] == seen["ours"]
    # ours differs from the seed's recipe only in the committed memory format and autocast
    assert seen["recipe"] == dataclasses.replace(bench.seed_recipe("cnn2"), channels_last=committed.channels_last,
                                                 bf16=committed.bf16)


def test_both_paths_train_and_report_a_rate(tiny_raw: Path) -> None:
    committed = model_params(load_params(PARAMS), "cnn2")  # bf16 + channels_last
    seed_rate, our_rate = throughput(tiny_raw, "cnn2", images=64, committed=committed)
    assert seed_rate > 0 and our_rate > 0


def test_format_rates_time_all_four_variants(tiny_raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[tuple[bool, bool, int]] = []

    def our_rate(images: torch.Tensor, labels: torch.Tensor, recipe) -> float:
        timed.append((recipe.channels_last, recipe.bf16, len(images)))
        return float(len(timed))

    monkeypatch.setattr(bench, "our_rate", our_rate)
    recipe = model_params(load_params(PARAMS), "lenet")
    assert format_rates(tiny_raw, recipe, images=32) == [1.0, 2.0, 3.0, 4.0]
    assert timed == [(channels_last, bf16, 32) for channels_last, bf16 in FORMATS]
    assert set(FORMATS) == {(False, False), (True, False), (False, True), (True, True)}


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Wrap bench.<name> so that each call appends to the returned list."""
    calls: list[int] = []
    real = getattr(bench, name)

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, name, wrapped)
    return calls


@pytest.mark.parametrize("way", ["seed", "ours"])
def test_time_to_accuracy_stops_at_the_first_epoch_that_reaches_it(tiny_raw: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    way: str) -> None:
    recipe = dataclasses.replace(model_params(load_params(PARAMS), "lenet"), epochs=3, batch_size=16, bf16=False)
    epochs = counting(monkeypatch, "seed_epoch" if way == "seed" else "train_one_epoch")

    def run() -> tuple[float | None, float]:
        return bench.time_to_accuracy_seed_way(tiny_raw, epochs=3) if way == "seed" else \
            bench.time_to_accuracy_our_way(tiny_raw, recipe)

    monkeypatch.setattr(bench, "SEED_ACCURACY", 0.0)
    seconds, accuracy = run()
    assert len(epochs) == 1 and seconds is not None and seconds > 0 and 0 <= accuracy <= 1

    epochs.clear()
    monkeypatch.setattr(bench, "SEED_ACCURACY", 1.01)  # out of reach: every epoch runs, no time comes back
    seconds, accuracy = run()
    assert len(epochs) == 3 and seconds is None and 0 <= accuracy <= 1
