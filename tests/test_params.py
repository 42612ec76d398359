"""params.yaml loading: the committed file is valid, and every kind of mistake gets one clear line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_pipeline.models import MODELS
from mnist_pipeline.params import ParamsError, check_params, load_params, model_params, preprocess_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return copy.deepcopy(load_params(ROOT / "params.yaml"))


def test_committed_params_are_valid(raw: dict) -> None:
    check_params(raw, MODELS)
    assert set(raw["models"]) >= {"resnet18", "mlp", "lenet", "cnn6", "cnn2"}


def error_of(raw: dict) -> str:
    with pytest.raises(ParamsError) as info:
        check_params(raw, MODELS)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_suggests_the_close_one(raw: dict) -> None:
    raw["models"]["lenet"]["lr_rate"] = 0.1
    message = error_of(raw)
    assert "models.lenet.lr_rate" in message and "did you mean models.lenet.lr?" in message


def test_unknown_key_suggests_by_spelling(raw: dict) -> None:
    raw["train"]["thread"] = 2
    assert "did you mean train.threads?" in error_of(raw)


def test_unknown_section(raw: dict) -> None:
    raw["trian"] = {}
    assert "did you mean train?" in error_of(raw)


def test_missing_key(raw: dict) -> None:
    del raw["models"]["cnn2"]["batch_size"]
    assert error_of(raw) == "missing key models.cnn2.batch_size in params.yaml"


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("lr", "fast", "models.lenet.lr = 'fast' is a str; it must be a float"),
    ("epochs", 2.5, "models.lenet.epochs = 2.5 is a float; it must be a int"),
    ("epochs", True, "models.lenet.epochs = True is a bool; it must be a int"),
    ("channels_last", "yes", "models.lenet.channels_last = 'yes' is a str; it must be a bool"),
    ("bf16", 1, "models.lenet.bf16 = 1 is a int; it must be a bool"),
])
def test_wrong_type(raw: dict, key: str, value: object, expected: str) -> None:
    raw["models"]["lenet"][key] = value
    assert error_of(raw) == expected


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("lr", 0, "models.lenet.lr = 0.0 must be > 0"),
    ("lr", -0.1, "models.lenet.lr = -0.1 must be > 0"),
    ("epochs", 0, "models.lenet.epochs = 0 must be >= 1"),
    ("batch_size", 0, "models.lenet.batch_size = 0 must be >= 2"),
    ("patience", -1, "models.lenet.patience = -1 must be >= 0"),
    ("label_smoothing", 1.0, "models.lenet.label_smoothing = 1.0 must be in [0, 1)"),
    ("ema_decay", 1.0, "models.lenet.ema_decay = 1.0 must be in [0, 1) (0 turns it off)"),
    ("clean_epochs", 11, "models.lenet.clean_epochs = 11 must be in [0, epochs = 10]"),
])
def test_out_of_range(raw: dict, key: str, value: object, fragment: str) -> None:
    raw["models"]["lenet"][key] = value
    assert fragment in error_of(raw)


def test_unknown_architecture_lists_valid_names(raw: dict) -> None:
    raw["models"]["lenet"]["arch"] = "lenet5"
    message = error_of(raw)
    assert "models.lenet.arch = 'lenet5' is not valid" in message
    assert all(name in message for name in MODELS)


def test_unknown_optimizer_lists_valid_names(raw: dict) -> None:
    raw["models"]["mlp"]["optimizer"] = "rmsprop"
    assert "models.mlp.optimizer = 'rmsprop' is not valid; choose one of: adam, adamw, sgd" in error_of(raw)


def test_val_split_larger_than_training_set(raw: dict) -> None:
    raw["preprocess"]["val_size"] = 60_000
    with pytest.raises(ParamsError, match=r"preprocess.val_size = 60000 must be between 1 and 59999"):
        preprocess_params(raw)


def test_model_name_must_be_defined(raw: dict) -> None:
    with pytest.raises(ParamsError, match="no models.vgg in params.yaml; defined models: resnet18, mlp"):
        model_params(raw, "vgg", MODELS)


def test_model_names_must_be_file_safe(raw: dict) -> None:
    raw["models"]["Le Net"] = raw["models"].pop("lenet")
    assert "model name 'Le Net' must be lower-case" in error_of(raw)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ParamsError, match="is not valid YAML"):
        load_params(path)


@pytest.mark.parametrize("stage", ["download", "preprocess", "train"])
def test_stage_stops_before_any_work_with_one_line(raw: dict, tmp_path: Path, stage: str) -> None:
    raw["models"]["cnn6"]["lr"] = -1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    args = {"download": ["--out", str(out)],
            "preprocess": ["--raw", str(out), "--out", str(out)],
            "train": ["--model", "lenet", "--data", str(out), "--out", str(out / "m.pt"),
                      "--history", str(out / "h.csv"), "--checkpoint", str(out / "c.pt")]}[stage]
    result = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params), *args],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "error: models.cnn6.lr = -1.0 must be > 0\n"
    assert not out.exists()
