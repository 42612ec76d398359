"""Smoke profile overrides: every model shrunk to one epoch, weight averaging off where it is on."""

from __future__ import annotations

from pathlib import Path

import yaml

from mnist_tools.smoke import smoke_overrides

PARAMS = Path(__file__).parents[2] / "params.yaml"


def test_every_model_gets_one_epoch_and_no_weight_average() -> None:
    overrides = smoke_overrides(PARAMS)
    models = yaml.safe_load(PARAMS.read_text())["models"]
    assert "preprocess.train_limit=2000" in overrides
    assert "preprocess.val_size=1000" in overrides
    assert all(f"models.{name}.epochs=1" in overrides for name in models)
    averaged = {name for name, recipe in models.items() if recipe.get("ema_decay")}
    assert averaged  # the committed params average at least one model's weights
    assert {o.split(".")[1] for o in overrides if o.endswith(".ema_decay=0")} == averaged
