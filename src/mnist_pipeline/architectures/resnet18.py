"""Tutorial 000: torchvision's ResNet18 with a 1-channel stem and a 10-way head."""

from __future__ import annotations

from torch import nn

from mnist_pipeline.architectures.shared import NUM_CLASSES, register_model, use_dense_small_maps


@register_model(
    "resnet18",
    "ResNet18 with a 1-channel 7x7 stem (tutorial 000), 11.2M parameters",
    ("mnist", "tutorial-000", "convnet", "resnet"),
    # torchvision ResNet18 (11,689,512) with conv1 1x64x7x7 (-3 input channels: -6,272)
    # and fc 512x10+10 instead of 512x1000+1000 (-507,870)
    parameters=11_689_512 - 6_272 - 507_870,
)
def resnet18() -> nn.Module:
    """Tutorial 000: torchvision ResNet18 with a 1-channel 7x7/2 stem and a 10-way head."""
    from torchvision.models import resnet18 as torchvision_resnet18  # ~3 s to import: only where it is used

    model = torchvision_resnet18(weights=None, num_classes=NUM_CLASSES)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # layer3 and layer4 run on 2x2 and 1x1 maps here, where oneDNN's CPU kernels are slowest; on such maps
    # a convolution is a dense layer (smallconv): same modules, parameters and state_dict, other kernels.
    return use_dense_small_maps(model)
