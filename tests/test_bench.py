"""The benchmark's two training paths run on the same images (tiny generated IDX files)."""

from __future__ import annotations

from pathlib import Path

from mnist_pipeline.bench import FORMATS, format_rates, seed_loader, throughput
from mnist_pipeline.params import load_params, model_params


def test_seed_loader_applies_the_seed_transforms(tiny_raw: Path) -> None:
    x, y = next(iter(seed_loader(tiny_raw, "lenet", images=100)))
    assert x.shape == (100, 1, 28, 28) and y.shape == (100,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0  # Normalize((0.5,), (0.5,)) maps [0, 1] to [-1, 1]


def test_both_paths_train_and_report_a_rate(tiny_raw: Path) -> None:
    committed = model_params(load_params(Path(__file__).parents[1] / "params.yaml"), "cnn2")  # bf16 + channels_last
    seed_rate, our_rate = throughput(tiny_raw, "cnn2", images=64, committed=committed)
    assert seed_rate > 0 and our_rate > 0


def test_format_rates_time_all_four_variants(tiny_raw: Path) -> None:
    recipe = model_params(load_params(Path(__file__).parents[1] / "params.yaml"), "lenet")
    rates = format_rates(tiny_raw, recipe, images=32)
    assert len(rates) == len(FORMATS) == 4 and all(rate > 0 for rate in rates)
