"""Smoke profile overrides: every model shrunk to one epoch, weight averaging off where it is on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from mnist_tools.smoke import KEEP_SHIFTS, smoke_overrides

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


def test_test_time_shifts_stay_as_the_recipe_says_for_one_model_only() -> None:
    overrides = smoke_overrides(PARAMS)
    models = yaml.safe_load(PARAMS.read_text())["models"]
    assert models[KEEP_SHIFTS]["test_shifts"] == "auto"  # the smoke run still chooses on val, end to end
    assert not any(o.startswith(f"models.{KEEP_SHIFTS}.test_shifts") for o in overrides)
    assert {o for o in overrides if ".test_shifts=" in o} == {
        f"models.{name}.test_shifts=never" for name in models if name != KEEP_SHIFTS
    }


def test_verified_mnist_is_linked_into_the_copy_and_anything_else_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_pipeline import data
    from mnist_tools.smoke import RAW_DIR, reuse_mnist

    root, dest = tmp_path / "project", tmp_path / "smoke"
    raw = root / RAW_DIR / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {name: f"{name} bytes".encode() for name in data.RAW_MD5}
    for name, content in files.items():
        (raw / name).write_bytes(content)
    # these four stand in for MNIST's: the download stage would keep them, so the smoke run may reuse them
    monkeypatch.setattr(data, "RAW_MD5", {name: hashlib.md5(b).hexdigest() for name, b in files.items()})
    assert reuse_mnist(root, dest)
    copied = dest / RAW_DIR / "MNIST" / "raw"
    assert {p.name: p.read_bytes() for p in copied.iterdir()} == files
    # a file that is not MNIST's: nothing is copied, and the smoke run's download stage fetches MNIST
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"changed")
    assert not reuse_mnist(root, tmp_path / "other")
    assert not (tmp_path / "other").exists()
