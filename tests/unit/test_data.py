"""Reading raw IDX files through torchvision, downloading from mirrors, the seeded val split,
and the processed tensors."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import gzip_bytes, write_idx
from torchvision.datasets import MNIST
from torchvision.datasets import utils as tv_utils

from mnist_pipeline.data import (
    DownloadError,
    _one_line,
    download_mnist,
    load_raw,
    load_split,
    mirrors_from_env,
    save_split,
    split_train_val,
)
from mnist_pipeline.errors import PipelineError

RAW_NAMES = [
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
]
MNIST_ORDER = [RAW_NAMES[2], RAW_NAMES[3], RAW_NAMES[0], RAW_NAMES[1]]


class Payload:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- mirrors and one-line errors ----------------------------------------------------------------------------


def test_mirrors_from_env() -> None:
    assert mirrors_from_env({"MNIST_MIRROR": "http://a:1, http://b:2/x/"}) == ["http://a:1/", "http://b:2/x/"]
    assert mirrors_from_env({"MNIST_MIRROR": " ,, http://c/ "}) == ["http://c/"]
    for env in ({}, {"MNIST_MIRROR": ""}, {"MNIST_MIRROR": " , "}):
        default = mirrors_from_env(env)
        assert default == MNIST.mirrors and default is not MNIST.mirrors


def test_mirrors_from_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MIRROR", "http://env-mirror:8/")
    assert mirrors_from_env() == ["http://env-mirror:8/"]
    assert mirrors_from_env({}) == MNIST.mirrors
    monkeypatch.delenv("MNIST_MIRROR")
    assert mirrors_from_env() == MNIST.mirrors


def test_one_line_keeps_the_last_non_blank_line_with_spaces_collapsed() -> None:
    assert _one_line(
        RuntimeError("Error downloading x:\nTried m, got:\n  <urlopen   error [Errno 2]  nope>  \n\n")
    ) == ("<urlopen error [Errno 2] nope>")
    assert _one_line(OSError()) == "OSError"
    assert _one_line(RuntimeError(" \n \n")) == "RuntimeError"


@pytest.mark.parametrize(("length", "expected"), [(159, 159), (160, 160), (161, 160), (400, 160)])
def test_one_line_shortens_long_messages(length: int, expected: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    got = _one_line(RuntimeError(text))
    assert len(got) == expected
    assert got == (text if length < 160 else text[:157] + "...")


# --- download -----------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """file:// mirrors (no network): 'good' serves four tiny .gz files
    whose md5s torchvision is told to expect."""
    raw = tmp_path / "idx"
    generator = torch.Generator().manual_seed(1)
    for prefix, n in (("train", 12), ("t10k", 6)):
        labels = torch.arange(n) % 10
        write_idx(
            raw, prefix, torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8), labels
        )
    good, empty, corrupt = tmp_path / "good", tmp_path / "empty", tmp_path / "corrupt"
    for folder in (good, empty, corrupt):
        folder.mkdir()
    resources = []
    for name in MNIST_ORDER:
        packed = gzip_bytes((raw / name).read_bytes())
        (good / f"{name}.gz").write_bytes(packed)
        (corrupt / f"{name}.gz").write_bytes(packed[:-1] + bytes([packed[-1] ^ 0xFF]))
        resources.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
    monkeypatch.setattr(MNIST, "resources", resources)

    def fetch(url: str, filename: str, chunk_size: int = 0) -> None:
        # torchvision's own fetch needs a Content-Length, which file:// responses lack
        with urllib.request.urlopen(url) as response:
            Path(filename).write_bytes(response.read())
        sys.stderr.write(f"\r{Path(filename).name}: 100%")  # as its tqdm progress bar does

    monkeypatch.setattr(tv_utils, "_urlretrieve", fetch)
    # torchvision's own mirrors must never be reached, even by a broken download_mnist
    monkeypatch.setattr(MNIST, "mirrors", [empty.as_uri() + "/"])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(17.0)
    try:
        yield {
            "good": good.as_uri() + "/",
            "empty": empty.as_uri() + "/",
            "corrupt": corrupt.as_uri() + "/",
            "idx": str(raw),
        }
    finally:
        socket.setdefaulttimeout(previous)


@pytest.fixture
def download_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each torchvision download saw: where it wrote, under which socket timeout, from which mirrors."""
    calls: list[dict[str, Any]] = []
    real_download = MNIST.download

    def spy(self: MNIST) -> None:
        calls.append(
            {
                "root": Path(self.root),
                "raw_folder": Path(self.raw_folder),
                "mirrors": list(self.mirrors),
                "timeout": socket.getdefaulttimeout(),
            }
        )
        real_download(self)

    monkeypatch.setattr(MNIST, "download", spy)
    return calls


def test_download_tries_mirrors_in_turn_and_moves_verified_files_into_place(
    tmp_path: Path,
    tiny_mirrors: dict[str, str],
    download_calls: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "data" / "mnist" / "raw"
    mirrors = [tiny_mirrors["empty"], tiny_mirrors["corrupt"], tiny_mirrors["good"], tiny_mirrors["corrupt"]]
    download_mnist(out, mirrors, timeout_s=3.5)
    assert [call["mirrors"] for call in download_calls] == [[m] for m in mirrors[:3]]
    for call in download_calls:
        assert call["timeout"] == 3.5
        assert call["root"].parent == out.parent and call["root"].name.startswith(".raw-")
        assert call["raw_folder"] == call["root"] / "MNIST" / "raw"
    assert socket.getdefaulttimeout() == 17.0
    assert sorted(p.name for p in out.parent.iterdir()) == ["raw"]
    assert sorted(p.name for p in out.iterdir()) == ["MNIST"]
    assert sorted(p.name for p in (out / "MNIST").iterdir()) == ["raw"]
    assert sorted(p.name for p in (out / "MNIST" / "raw").iterdir()) == RAW_NAMES
    for name in RAW_NAMES:
        assert (out / "MNIST" / "raw" / name).read_bytes() == (Path(tiny_mirrors["idx"]) / name).read_bytes()
    images, labels = load_raw(out, train=True)
    assert images.shape == (12, 28, 28) and labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert capfd.readouterr() == ("", "")


def test_download_replaces_an_earlier_download(
    tmp_path: Path, tiny_mirrors: dict[str, str], download_calls: list[dict[str, Any]]
) -> None:
    out = tmp_path / "raw"
    download_mnist(out, [tiny_mirrors["good"]], timeout_s=2)
    (out / "stale.txt").write_text("from an older run")
    download_mnist(out, [tiny_mirrors["good"]], timeout_s=2)
    assert len(download_calls) == 2 and all(call["root"].parent == tmp_path for call in download_calls)
    assert sorted(p.name for p in out.iterdir()) == ["MNIST"]
    assert sorted(p.name for p in (out / "MNIST" / "raw").iterdir()) == RAW_NAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt", "empty", "good", "idx", "raw"]
    assert socket.getdefaulttimeout() == 17.0


def test_download_failure_names_every_mirror_in_one_line_and_leaves_nothing(
    tmp_path: Path,
    tiny_mirrors: dict[str, str],
    download_calls: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "data" / "raw"
    empty, corrupt = tiny_mirrors["empty"], tiny_mirrors["corrupt"]
    missing = Path(empty[len("file://") :], "train-images-idx3-ubyte.gz")
    with pytest.raises(DownloadError) as info:
        download_mnist(out, [empty, corrupt], timeout_s=1.25)
    assert str(info.value) == (
        f"could not download MNIST from any mirror: tried {empty} "
        "(<urlopen error [Errno 2] No such file or directory: "
        f"'{missing}'>); {corrupt} (File not found or corrupted.) "
        "(fix: set MNIST_MIRROR to one or more base URLs "
        "serving the four official .gz files, e.g. MNIST_MIRROR=http://127.0.0.1:8765/ after "
        "`python -m http.server 8765 --bind 127.0.0.1` in a folder holding them)"
    )
    assert [call["timeout"] for call in download_calls] == [1.25, 1.25]
    assert socket.getdefaulttimeout() == 17.0
    assert list((tmp_path / "data").iterdir()) == []
    assert capfd.readouterr() == ("", "")


def test_download_restores_the_socket_timeout_after_an_unexpected_error(
    tmp_path: Path, tiny_mirrors: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: MNIST) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(MNIST, "download", explode)
    with pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path / "raw", [tiny_mirrors["good"]], timeout_s=1)
    assert socket.getdefaulttimeout() == 17.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt", "empty", "good", "idx"]


# --- raw files ----------------------------------------------------------------------------------------------


def test_load_raw_reads_generated_idx(tiny_raw: Path) -> None:
    images, labels = load_raw(tiny_raw, train=True)
    assert images.shape == (120, 28, 28) and images.dtype == torch.uint8 and images.is_contiguous()
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 10 for i in range(120)]
    assert torch.equal(images[:, 0, 0].long(), labels)
    test_images, test_labels = load_raw(tiny_raw, train=False)
    assert test_images.shape == (30, 28, 28) and test_labels.tolist() == [i % 10 for i in range(30)]
    assert not torch.equal(test_images, images[:30])


def test_load_raw_without_files_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # were it to try a download, it would find nothing here rather than reach the network
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setattr(MNIST, "mirrors", [empty.as_uri() + "/"])
    with pytest.raises(PipelineError) as info:
        load_raw(tmp_path, train=True)
    assert str(info.value) == (
        f"no MNIST files under {tmp_path}/MNIST/raw: stage download writes them "
        "(fix: run `dvc repro download`)"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-mirror"]


# --- val split ----------------------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_keeps_labels(tiny_raw: Path) -> None:
    images, labels = load_raw(tiny_raw, train=True)
    a = split_train_val(images, labels, val_size=20, train_limit=0, seed=3)
    b = split_train_val(images, labels, val_size=20, train_limit=0, seed=3)
    c = split_train_val(images, labels, val_size=20, train_limit=0, seed=4)
    assert list(a) == ["train", "val"]
    assert torch.equal(a["val"][0], b["val"][0]) and not torch.equal(a["val"][0], c["val"][0])
    assert len(a["train"][0]) == 100 and len(a["val"][0]) == 20
    for split_images, split_labels in a.values():
        assert torch.equal(split_images[:, 0, 0].long(), split_labels)  # pixel (0, 0) encodes the label
    seen = {tuple(img.flatten().tolist()) for part in a.values() for img in part[0]}
    assert len(seen) == 120


def test_split_indices_follow_the_seeded_permutation_in_order() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1).expand(10, 28, 28).contiguous()
    labels = torch.arange(10) * 10
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5))
    val_idx, train_idx = sorted(order[:3].tolist()), sorted(order[3:].tolist())
    splits = split_train_val(images, labels, val_size=3, train_limit=4, seed=5)
    assert splits["val"][0][:, 0, 0].tolist() == val_idx and splits["val"][1].tolist() == [
        10 * i for i in val_idx
    ]
    assert splits["train"][0][:, 0, 0].tolist() == train_idx[:4]
    assert splits["train"][1].tolist() == [10 * i for i in train_idx[:4]]
    splits["train"][0].zero_()  # the splits are copies, not views of the input
    assert images[:, 0, 0].tolist() == list(range(10))


def test_train_limit_truncates_only_train(tiny_raw: Path) -> None:
    images, labels = load_raw(tiny_raw, train=True)
    splits = split_train_val(images, labels, val_size=20, train_limit=50, seed=0)
    assert len(splits["train"][0]) == 50 and len(splits["val"][0]) == 20
    unlimited = split_train_val(images, labels, val_size=20, train_limit=0, seed=0)
    assert torch.equal(splits["train"][0], unlimited["train"][0][:50])
    assert len(split_train_val(images, labels, val_size=20, train_limit=500, seed=0)["train"][0]) == 100


@pytest.mark.parametrize("val_size", [1, 9])
def test_val_size_at_its_bounds(val_size: int) -> None:
    images, labels = torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10)
    splits = split_train_val(images, labels, val_size=val_size, train_limit=0, seed=0)
    assert len(splits["val"][1]) == val_size and len(splits["train"][1]) == 10 - val_size


@pytest.mark.parametrize("val_size", [-1, 0, 10, 11])
def test_val_size_out_of_bounds_is_refused(val_size: int) -> None:
    images, labels = torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10)
    with pytest.raises(ValueError) as info:
        split_train_val(images, labels, val_size=val_size, train_limit=0, seed=0)
    assert str(info.value) == f"val_size = {val_size} must be between 1 and 9"


# --- processed splits ---------------------------------------------------------------------------------------


def test_split_round_trip_and_rejects_other_files(tmp_path: Path) -> None:
    images, labels = torch.zeros(5, 28, 28, dtype=torch.uint8), torch.arange(5)
    path = tmp_path / "a" / "b" / "s.pt"
    save_split(path, images, labels)
    save_split(path.with_name("t.pt"), images[:2], labels[:2])
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.pt", "t.pt"]
    raw = torch.load(path, weights_only=True)
    assert raw.keys() == {"images", "labels"}
    got_images, got_labels = load_split(path)
    assert torch.equal(got_images, images) and torch.equal(got_labels, labels)


@pytest.mark.parametrize(
    "content",
    [
        {"images": torch.zeros(5, 28, 28), "labels": torch.arange(5)},
        {"images": torch.zeros(5, 784, dtype=torch.uint8), "labels": torch.arange(5)},
        {"images": torch.zeros(5, 28, 28, dtype=torch.uint8), "labels": torch.arange(4)},
        {"images": torch.zeros(5, 28, 28, dtype=torch.uint8), "labels": torch.zeros(5, 1)},
    ],
)
def test_load_split_rejects_other_tensors(tmp_path: Path, content: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(PipelineError) as info:
        load_split(path)
    assert str(info.value) == f"{path} is not a processed MNIST split (fix: rerun `dvc repro -f preprocess`)"


def test_load_split_missing_file_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        load_split(tmp_path / "train.pt")
    assert (
        str(info.value)
        == f"{tmp_path / 'train.pt'} not found: stage preprocess writes it (fix: run `dvc repro preprocess`)"
    )


def test_load_split_never_runs_code_in_a_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch would load unsafely by default under this variable unless the caller asks for weights_only itself
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker, path = tmp_path / "pwned", tmp_path / "s.pt"
    torch.save({"images": torch.zeros(1, 28, 28, dtype=torch.uint8), "labels": Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_split(path)
    assert not marker.exists()
