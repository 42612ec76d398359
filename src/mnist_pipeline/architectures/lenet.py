"""Tutorial 002: LeNet-style, two convs and two dense layers."""

from __future__ import annotations

from torch import nn

from mnist_pipeline.architectures.shared import TwoConvNet, register_model


@register_model(
    "lenet",
    "LeNet-style 2 conv + 2 fc (tutorial 002)",
    ("mnist", "tutorial-002", "convnet"),
    # conv 1→24 3x3, conv 24→48 3x3, fc 1200→200, fc 200→10
    parameters=(24 * 9 + 24) + (48 * 24 * 9 + 48) + (1200 * 200 + 200) + (200 * 10 + 10),
)
def lenet() -> nn.Module:
    """Tutorial 002: conv 24 → conv 48 → fc 1200→200 → fc 200→10."""
    return TwoConvNet(24, 48, 200)
