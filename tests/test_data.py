"""Reading raw IDX files through torchvision, the seeded val split, and the processed tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnist_pipeline.data import load_raw, load_split, mirrors_from_env, save_split, split_train_val
from mnist_pipeline.errors import PipelineError


def test_load_raw_reads_generated_idx(tiny_raw: Path) -> None:
    images, labels = load_raw(tiny_raw, train=True)
    assert images.shape == (120, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    test_images, _ = load_raw(tiny_raw, train=False)
    assert test_images.shape == (30, 28, 28)


def test_load_raw_without_files_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `dvc repro download`"):
        load_raw(tmp_path, train=True)


def test_split_is_seeded_disjoint_and_keeps_labels(tiny_raw: Path) -> None:
    images, labels = load_raw(tiny_raw, train=True)
    a = split_train_val(images, labels, val_size=20, train_limit=0, seed=3)
    b = split_train_val(images, labels, val_size=20, train_limit=0, seed=3)
    c = split_train_val(images, labels, val_size=20, train_limit=0, seed=4)
    assert torch.equal(a["val"][0], b["val"][0]) and not torch.equal(a["val"][0], c["val"][0])
    assert len(a["train"][0]) == 100 and len(a["val"][0]) == 20
    for split_images, split_labels in a.values():
        assert torch.equal(split_images[:, 0, 0].long(), split_labels)  # pixel (0, 0) encodes the label
    seen = {tuple(img.flatten().tolist()) for part in a.values() for img in part[0]}
    assert len(seen) == 120


def test_train_limit_truncates_only_train(tiny_raw: Path) -> None:
    images, labels = load_raw(tiny_raw, train=True)
    splits = split_train_val(images, labels, val_size=20, train_limit=50, seed=0)
    assert len(splits["train"][0]) == 50 and len(splits["val"][0]) == 20


def test_split_round_trip_and_rejects_other_files(tmp_path: Path) -> None:
    images, labels = torch.zeros(5, 28, 28, dtype=torch.uint8), torch.arange(5)
    save_split(tmp_path / "s.pt", images, labels)
    got_images, got_labels = load_split(tmp_path / "s.pt")
    assert torch.equal(got_images, images) and torch.equal(got_labels, labels)
    torch.save({"images": images.float(), "labels": labels}, tmp_path / "bad.pt")
    with pytest.raises(PipelineError, match="not a processed MNIST split"):
        load_split(tmp_path / "bad.pt")


def test_mirrors_from_env() -> None:
    assert mirrors_from_env({"MNIST_MIRROR": "http://a:1, http://b:2/x/"}) == ["http://a:1/", "http://b:2/x/"]
    default = mirrors_from_env({})
    assert default and all(m.startswith("http") for m in default)
