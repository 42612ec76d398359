"""Tutorial 004: two convs and two dense layers, wider convs and a narrower hidden layer than lenet's."""

from __future__ import annotations

from torch import nn

from mnist_pipeline.architectures.shared import TwoConvNet, register_model


@register_model(
    "cnn2",
    "2 conv + 2 fc (tutorial 004)",
    ("mnist", "tutorial-004", "convnet"),
    # conv 1→32 3x3, conv 32→64 3x3, fc 1600→64, fc 64→10
    parameters=(32 * 9 + 32) + (64 * 32 * 9 + 64) + (1600 * 64 + 64) + (64 * 10 + 10),
)
def cnn2() -> nn.Module:
    """Tutorial 004: conv 32 → conv 64 → fc 1600→64 → fc 64→10."""
    return TwoConvNet(32, 64, 64)
