"""Model files: round trip, and refusal of anything else without running its code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from mnist_pipeline.checkpoint import ModelFileError, load_model, save_model
from mnist_pipeline.models import build_model

INFO = {"norm_mean": 0.5, "norm_std": 0.5, "channels_last": False, "epochs_run": 3, "best_epoch": 2}


def test_round_trip(tmp_path: Path) -> None:
    model = build_model("cnn2")
    save_model(tmp_path / "m.pt", "cnn2", model.state_dict(), INFO)
    loaded, info = load_model(tmp_path / "m.pt")
    assert info["arch"] == "cnn2" and info["best_epoch"] == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_missing_keys(tmp_path: Path) -> None:
    save_model(tmp_path / "m.pt", "cnn2", build_model("cnn2").state_dict(), {})
    with pytest.raises(ModelFileError, match="lacks best_epoch, channels_last"):
        load_model(tmp_path / "m.pt")


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    save_model(tmp_path / "m.pt", "lenet", build_model("cnn2").state_dict(), INFO)
    with pytest.raises(ModelFileError, match="weights do not fit architecture 'lenet'"):
        load_model(tmp_path / "m.pt")


def test_unknown_architecture(tmp_path: Path) -> None:
    save_model(tmp_path / "m.pt", "alexnet", {}, INFO)
    with pytest.raises(ModelFileError, match="unknown architecture 'alexnet'; valid names: bnnet"):
        load_model(tmp_path / "m.pt")


def test_plain_state_dict_is_not_ours(tmp_path: Path) -> None:
    torch.save(build_model("cnn2").state_dict(), tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="not a model file of this project"):
        load_model(tmp_path / "m.pt")


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_with_code_is_refused_and_not_run(tmp_path: Path, writer: str) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "m.pt"
    if writer == "torch":
        torch.save({"format": "x", "payload": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelFileError, match="is not a model file of this project"):
        load_model(path)
    assert not marker.exists()


def test_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found; train it"):
        load_model(tmp_path / "nope.pt")
