"""Tutorial 003: six 3x3 convs and one dense layer."""

from __future__ import annotations

import torch
from torch import nn

from mnist_pipeline.architectures.shared import NUM_CLASSES, register_model


@register_model(
    "cnn6",
    "six 3x3 convs and one linear layer (tutorial 003)",
    ("mnist", "tutorial-003", "convnet"),
    # convs 1→16, 16→16, 16→32, 32→32, 32→64, 64→64 (3x3), fc 64x7x7→10
    parameters=(16 * 9 + 16)
    + (16 * 16 * 9 + 16)
    + (32 * 16 * 9 + 32)
    + (32 * 32 * 9 + 32)
    + (64 * 32 * 9 + 64)
    + (64 * 64 * 9 + 64)
    + (3136 * 10 + 10),
)
class CNN6(nn.Module):
    """Tutorial 003: six 3x3 convs (16,16,32,32,64,64) with two max-pools and one Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))  # 14x14
        self.conv2 = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )  # 7x7
        self.conv3 = nn.Sequential(
            nn.Conv2d(32, 64, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.ReLU(),
        )
        self.out = nn.Linear(64 * 7 * 7, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.out(torch.flatten(x, 1))
