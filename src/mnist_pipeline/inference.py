"""What running a model needs, in training and after: the device, the input preprocessing, batched logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
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


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int, preprocessing: Preprocessing
) -> torch.Tensor:
    """Logits (N, 10) float32 on the CPU for (N, 28, 28) uint8 images, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)  # a no-op when fit() moved them already
        out.append(model(preprocessing.input(batch)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 10)
