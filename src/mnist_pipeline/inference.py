"""What running a model needs, in training and after: the device, the input preprocessing, batched logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnist_pipeline.errors import PipelineError


def ieee_float32() -> None:
    """Make float32 mean IEEE float32 on CUDA too: cuDNN convolutions default to TF32 (10-bit mantissa).

    On an H200, logits of a CUDA-trained model moved by up to 5.5e-3 between TF32 convolutions and the
    CPU. Recipes that want lower precision say so (bf16); the device alone must not change it. Process-wide,
    and a no-op for CPU kernels, whose float32 is IEEE already.
    """
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"


def select_device(name: str) -> torch.device:
    """Resolve 'auto' to cuda > mps > cpu, with IEEE float32; a missing device names the fix."""
    ieee_float32()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            "train.device is 'cuda' but this machine has no CUDA device "
            "(fix: set train.device: auto or cpu in params.yaml)"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise PipelineError(
            "train.device is 'mps' but this machine has no MPS device "
            "(fix: set train.device: auto or cpu in params.yaml)"
        )
    return torch.device(name)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model input, and the memory format the model runs in: saved with every model."""

    mean: float  # input = (pixel / 255 - mean) / std
    std: float
    channels_last: bool  # NHWC activations and weights

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float in [0, 1] → the model input, in place where it can be."""
        x = x.sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def input(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 28, 28) uint8 → (B, 1, 28, 28) float32 model input."""
        return self.normalise(images.unsqueeze(1).float().div_(255.0))

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in the memory format its input comes in."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


# (dy, dx) in pixels: the image itself and its four 1-pixel shifts, for test-time shifts
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(N, H, W) images moved dy rows down and dx columns right (|dy|, |dx| <= 1), zeros shifted in."""
    padded = F.pad(images, (1, 1, 1, 1))  # (N, H + 2, W + 2)
    h, w = images.shape[-2:]
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


@torch.inference_mode()
def predict_modes(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    preprocessing: Preprocessing,
    modes: tuple[str, ...],
    advance: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """(N, 10) float32 outputs on the CPU for (N, 28, 28) uint8 images, in eval mode, per mode asked for.

    "plain": the logits. "shifted": the log of the mean softmax over the image and its four 1-pixel
    shifts (SHIFTS), log-probabilities that argmax, softmax and cross-entropy read like logits. Asked
    for together, the image's own pass serves both. advance, if given, is told each batch's image count.
    """
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {mode: [] for mode in modes}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)  # a no-op when they are on the device already
        logits = model(preprocessing.input(batch)).float()
        if "plain" in out:
            out["plain"].append(logits.cpu())
        if "shifted" in out:
            probs = logits.softmax(1)
            for dy, dx in SHIFTS[1:]:
                probs = probs + model(preprocessing.input(shift_images(batch, dy, dx))).float().softmax(1)
            out["shifted"].append((probs / len(SHIFTS)).log().cpu())
        if advance is not None:
            advance(len(batch))
    return {mode: torch.cat(parts) if parts else torch.empty(0, 10) for mode, parts in out.items()}


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    preprocessing: Preprocessing,
    test_shifts: bool = False,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Logits (N, 10) float32 on the CPU for (N, 28, 28) uint8 images, in eval mode.

    With test_shifts, the log of the mean softmax over the image and its four 1-pixel shifts (SHIFTS).
    advance, if given, is told each batch's image count (a progress bar).
    """
    mode = "shifted" if test_shifts else "plain"
    return predict_modes(model, images, batch_size, preprocessing, (mode,), advance)[mode]


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean cross-entropy of (N, 10) logits or log-probabilities against (N,) labels."""
    return {
        "accuracy": (logits.argmax(1) == labels).float().mean().item(),
        "loss": F.cross_entropy(logits.float(), labels).item(),
    }


def rank(accuracy: float, loss: float) -> tuple[float, float]:
    """The order every choice on val ranks by: higher accuracy, then lower cross-entropy (max() picks)."""
    return accuracy, -loss


def choose_test_shifts(
    model: nn.Module,
    setting: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    preprocessing: Preprocessing,
) -> tuple[bool, dict[str, dict[str, float]]]:
    """A recipe's test_shifts setting resolved on these (val) images, and the scores behind it.

    "auto" scores both ways ("plain", "shifted") and shifts when that is better: higher accuracy, then
    lower cross-entropy; a tie keeps the plain pass, 5x cheaper. "always" and "never" score their one way.
    """
    modes = {"auto": ("plain", "shifted"), "never": ("plain",), "always": ("shifted",)}[setting]
    outputs = predict_modes(model, images, batch_size, preprocessing, modes)
    scores = {mode: score(output, labels) for mode, output in outputs.items()}
    if setting != "auto":
        return setting == "always", scores
    ranks = {mode: rank(s["accuracy"], s["loss"]) for mode, s in scores.items()}
    return ranks["shifted"] > ranks["plain"], scores
