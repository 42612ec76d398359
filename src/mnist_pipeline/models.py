"""Model registry: the five seed architectures plus our own, built by name, each with its card."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.smallconv import use_dense_small_maps

NUM_CLASSES = 10
Builder = TypeVar("Builder", bound=Callable[[], nn.Module])


@dataclass(frozen=True)
class ModelCard:
    """A registered architecture: how to build it, and what dvc.yaml's artifacts: says of it."""

    name: str
    build: Callable[[], nn.Module]
    description: str  # the artifact's desc
    labels: tuple[str, ...]  # the artifact's labels
    parameters: int  # worked out from the layer list; tests/unit/test_models.py builds the model and counts


MODELS: dict[str, ModelCard] = {}


def register_model(
    name: str, description: str, labels: tuple[str, ...], parameters: int
) -> Callable[[Builder], Builder]:
    """Add the decorated builder (a class or function without arguments) to MODELS; each name only once."""

    def register(build: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered (by {MODELS[name].build.__qualname__})")
        MODELS[name] = ModelCard(name, build, description, tuple(labels), parameters)
        return build

    return register


@register_model(
    "resnet18",
    "ResNet18 with a 1-channel 7x7 stem (seed 000), 11.2M parameters",
    ("mnist", "seed-000", "convnet", "resnet"),
    # torchvision ResNet18 (11,689,512) with conv1 1x64x7x7 (-3 input channels: -6,272)
    # and fc 512x10+10 instead of 512x1000+1000 (-507,870)
    parameters=11_689_512 - 6_272 - 507_870,
)
def resnet18() -> nn.Module:
    """Seed 000: torchvision ResNet18 with a 1-channel 7x7/2 stem and a 10-way head."""
    from torchvision.models import resnet18 as torchvision_resnet18  # ~3 s to import: only where it is used

    model = torchvision_resnet18(weights=None, num_classes=NUM_CLASSES)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # layer3 and layer4 run on 2x2 and 1x1 maps here, where oneDNN's CPU kernels are slowest; on such maps
    # a convolution is a dense layer (smallconv): same modules, parameters and state_dict, other kernels.
    return use_dense_small_maps(model)


@register_model(
    "mlp",
    "784-300-100-10 MLP with BatchNorm (seed 001)",
    ("mnist", "seed-001", "mlp"),
    parameters=235_500
    + 600
    + 30_100
    + 200
    + 1_010,  # 784x300+300, BN 2x300, 300x100+100, BN 2x100, 100x10+10
)
class MLP(nn.Module):
    """Seed 001: 784-300-100-10 with BatchNorm after each hidden Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.layer1 = nn.Sequential(nn.Linear(28 * 28, 300), nn.BatchNorm1d(300))
        self.layer2 = nn.Sequential(nn.Linear(300, 100), nn.BatchNorm1d(100))
        self.out = nn.Linear(100, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layer1(self.flatten(x)))
        x = F.relu(self.layer2(x))
        # The seed applied softmax here and then CrossEntropyLoss (a double softmax); we return logits.
        return self.out(x)


class TwoConvNet(nn.Module):
    """Seeds 002 and 004: conv 3x3 → pool → conv 3x3 → pool → fc → fc, at the widths each seed used."""

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
        # Seed 002 ends in log_softmax + nll_loss; logits + cross_entropy is the same loss.
        return self.fc2(x)


@register_model(
    "lenet",
    "LeNet-style 2 conv + 2 fc (seed 002)",
    ("mnist", "seed-002", "convnet"),
    # conv 1→24 3x3, conv 24→48 3x3, fc 1200→200, fc 200→10
    parameters=(24 * 9 + 24) + (48 * 24 * 9 + 48) + (1200 * 200 + 200) + (200 * 10 + 10),
)
def lenet() -> nn.Module:
    """Seed 002: conv 24 → conv 48 → fc 1200→200 → fc 200→10."""
    return TwoConvNet(24, 48, 200)


@register_model(
    "cnn6",
    "six 3x3 convs and one linear layer (seed 003)",
    ("mnist", "seed-003", "convnet"),
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
    """Seed 003: six 3x3 convs (16,16,32,32,64,64) with two max-pools and one Linear."""

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


@register_model(
    "cnn2",
    "2 conv + 2 fc (seed 004)",
    ("mnist", "seed-004", "convnet"),
    # conv 1→32 3x3, conv 32→64 3x3, fc 1600→64, fc 64→10
    parameters=(32 * 9 + 32) + (64 * 32 * 9 + 64) + (1600 * 64 + 64) + (64 * 10 + 10),
)
def cnn2() -> nn.Module:
    """Seed 004: conv 32 → conv 64 → fc 1600→64 → fc 64→10."""
    return TwoConvNet(32, 64, 64)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


@register_model(
    "bnnet",
    "four 3x3 convs with BatchNorm and a dense head, weight EMA (ours)",
    ("mnist", "ours", "convnet"),
    # bias-free 3x3 convs 1→16, 16→48, 48→48, 48→96, each with BN; fc 96x7x7→10
    parameters=(16 * 9 + 32)
    + (48 * 16 * 9 + 96)
    + (48 * 48 * 9 + 96)
    + (96 * 48 * 9 + 192)
    + (4704 * 10 + 10),
)
class BNNet(nn.Module):
    """Ours: four 3x3 convs with BatchNorm, one at 28x28, two at 14x14, one at 7x7; a dense head on 7x7."""

    def __init__(self, full: int = 16, half: int = 48, quarter: int = 96) -> None:
        super().__init__()
        # Few channels at full resolution: there BatchNorm, ReLU and pooling move the most memory per
        # image. 16 channels trained 1.4x faster than 24 (bf16, channels-last, 2 CPU cores).
        self.features = nn.Sequential(
            _conv_bn(1, full),
            nn.MaxPool2d(2),  # (N, full, 14, 14)
            _conv_bn(full, half),
            _conv_bn(half, half),
            nn.MaxPool2d(2),  # (N, half, 7, 7)
            _conv_bn(half, quarter),  # (N, quarter, 7, 7)
        )
        self.out = nn.Linear(
            quarter * 7 * 7, NUM_CLASSES
        )  # keeps where the strokes are, unlike global pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.flatten(self.features(x), 1))


def build_model(arch: str) -> nn.Module:
    """Return a freshly initialised model for the registered architecture name."""
    if arch not in MODELS:
        raise PipelineError(f"unknown architecture {arch!r} (fix: use one of {', '.join(sorted(MODELS))})")
    return MODELS[arch].build()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
