"""What every architecture module imports: the registration decorator, the number of classes, and the
layers several architectures share (the two-conv net of tutorials 002 and 004, and the small-map
convolution that ResNet18's deepest layers run with).

Every train and evaluate stage depends on this file: an edit here reruns every model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnist_pipeline.models import register_model
from mnist_pipeline.smallconv import use_dense_small_maps

__all__ = ["NUM_CLASSES", "TwoConvNet", "register_model", "use_dense_small_maps"]

NUM_CLASSES = 10


class TwoConvNet(nn.Module):
    """Tutorials 002 and 004: conv 3x3 → pool → conv 3x3 → pool → fc → fc, at the widths each used."""

    def __init__(self, conv1: int, conv2: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv1, kernel_size=3)  # (N, conv1, 26, 26) → pool → 13x13
        self.conv2 = nn.Conv2d(conv1, conv2, kernel_size=3)  # (N, conv2, 11, 11) → pool → 5x5
        self.fc1 = nn.Linear(conv2 * 5 * 5, hidden)
        self.fc2 = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        # Tutorial 002 ends in log_softmax + nll_loss; logits + cross_entropy is the same loss.
        return self.fc2(x)
