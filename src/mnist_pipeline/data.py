"""MNIST download through torchvision (with mirror override), tensor caching and the val split."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path

import torch

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import save_torch

MIRROR_ENV = "MNIST_MIRROR"
# md5 of each extracted file (torchvision checks the .gz archives' md5s; we keep only the extracted files)
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class DownloadError(PipelineError):
    """No mirror delivered all four MNIST files with the right md5."""


def mirrors_from_env(env: dict[str, str] | None = None) -> list[str]:
    """Mirror base URLs from MNIST_MIRROR (space- or comma-separated), else torchvision's own list."""
    # torchvision is imported where it is used: it takes ~3 s (it loads torch._dynamo), and the train and
    # evaluate stages read only the cached tensors.
    from torchvision.datasets import MNIST

    value = (os.environ if env is None else env).get(MIRROR_ENV, "")
    mirrors = [m for m in value.replace(",", " ").split() if m]
    if not mirrors:
        return list(MNIST.mirrors)
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _one_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    # torchvision's own report ends with the underlying error on its last line
    text = " ".join(lines[-1].split()) if lines else type(error).__name__
    return text if len(text) < 160 else text[:157] + "..."


def _md5(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def verified_raw(out_dir: Path) -> bool:
    """Whether out_dir/MNIST/raw holds exactly the four extracted MNIST files, each with its md5."""
    raw = Path(out_dir, "MNIST", "raw")
    if not raw.is_dir() or sorted(p.name for p in raw.iterdir()) != sorted(RAW_MD5):
        return False
    return all(_md5(raw / name) == md5 for name, md5 in RAW_MD5.items())


def download_mnist(out_dir: Path, mirrors: list[str], timeout_s: float) -> bool:
    """Download and md5-check the four MNIST files into out_dir/MNIST/raw, trying each mirror in turn.

    Files already there with MNIST's md5s are kept and False comes back: `dvc repro -f` keeps this
    stage's output (persist), so a forced rerun offline still has its data. Otherwise files are
    fetched into a temporary folder beside out_dir and moved into place only when all four are
    verified, so a failed or interrupted run never leaves files a later run would trust; True.
    """
    from torchvision.datasets import MNIST

    out_dir = Path(out_dir)
    if verified_raw(out_dir):
        return False
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # torchvision's urllib calls take no timeout of their own
    try:
        with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}-") as tmp:
            for mirror in mirrors:
                dataset_cls = type("MirroredMNIST", (MNIST,), {"mirrors": [mirror]})
                dataset_cls.__name__ = "MNIST"  # raw files live in <root>/MNIST/raw, as for MNIST itself
                try:
                    # torchvision prints progress and per-mirror failures; we report one line instead.
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        dataset_cls(tmp, train=True, download=True)
                except (RuntimeError, OSError) as e:
                    errors.append(f"{mirror} ({_one_line(e)})")
                    continue
                for gz in Path(tmp, "MNIST", "raw").glob("*.gz"):
                    gz.unlink()  # the extracted files are what we read; the archives only double the size
                if out_dir.exists():
                    shutil.rmtree(out_dir)
                os.replace(tmp, out_dir)
                os.mkdir(tmp)  # let TemporaryDirectory clean up an empty folder
                return True
    finally:
        socket.setdefaulttimeout(previous_timeout)
    raise DownloadError(
        f"could not download MNIST from any mirror: tried {'; '.join(errors)} "
        f"(fix: set {MIRROR_ENV} to one or more base URLs serving the four official .gz files, "
        f"e.g. {MIRROR_ENV}=http://127.0.0.1:8765/ after `python -m http.server 8765 --bind 127.0.0.1` "
        f"in a folder holding them)"
    )


def load_raw(raw_dir: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the downloaded training or test set."""
    from torchvision.datasets import MNIST

    try:
        dataset = MNIST(raw_dir, train=train, download=False)
    except RuntimeError:  # torchvision's "Dataset not found. You can use download=True": our fix is the stage
        raise PipelineError(
            f"no MNIST files under {raw_dir}/MNIST/raw: stage download writes them "
            "(fix: run `dvc repro download`)"
        ) from None
    return dataset.data.contiguous(), dataset.targets.to(torch.int64)


def split_train_val(
    images: torch.Tensor, labels: torch.Tensor, val_size: int, train_limit: int, seed: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Seeded random split of the training set into train and val; train optionally truncated."""
    if not 0 < val_size < len(images):
        raise ValueError(f"val_size = {val_size} must be between 1 and {len(images) - 1}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    if train_limit:
        train_idx = train_idx[:train_limit]
    return {
        "train": (images[train_idx].clone(), labels[train_idx].clone()),
        "val": (images[val_idx].clone(), labels[val_idx].clone()),
    }


def save_split(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write one split as {'images': (N, 28, 28) uint8, 'labels': (N,) int64}."""
    save_torch({"images": images, "labels": labels}, path)


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split written by save_split, checking dtypes and shapes."""
    try:
        data = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise PipelineError(
            f"{path} not found: stage preprocess writes it (fix: run `dvc repro preprocess`)"
        ) from None
    images, labels = data["images"], data["labels"]
    if images.dtype != torch.uint8 or images.dim() != 3 or labels.shape != images.shape[:1]:
        raise PipelineError(f"{path} is not a processed MNIST split (fix: rerun `dvc repro -f preprocess`)")
    return images, labels
