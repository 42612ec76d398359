"""Tutorial 001: a 784-300-100-10 MLP with BatchNorm. The smallest module here: copy it to add a model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnist_pipeline.architectures.shared import NUM_CLASSES, register_model


@register_model(
    "mlp",  # the file's name, and what params.yaml's `arch` says
    "784-300-100-10 MLP with BatchNorm (tutorial 001)",  # dvc.yaml's artifact description
    ("mnist", "tutorial-001", "mlp"),  # its labels
    # 784x300+300, BN 2x300, 300x100+100, BN 2x100, 100x10+10 (tests/unit/test_models.py counts them)
    parameters=235_500 + 600 + 30_100 + 200 + 1_010,
)
class MLP(nn.Module):
    """Tutorial 001: 784-300-100-10 with BatchNorm after each hidden Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.layer1 = nn.Sequential(nn.Linear(28 * 28, 300), nn.BatchNorm1d(300))
        self.layer2 = nn.Sequential(nn.Linear(300, 100), nn.BatchNorm1d(100))
        self.out = nn.Linear(100, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layer1(self.flatten(x)))
        x = F.relu(self.layer2(x))
        # The tutorial applied softmax here and then CrossEntropyLoss (a double softmax); we return logits.
        return self.out(x)
