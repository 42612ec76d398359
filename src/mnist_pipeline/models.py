"""The model registry: every module in mnist_pipeline/architectures/ is an architecture, found by name.

Building one imports only its module (and shared.py), so a train or evaluate stage runs exactly the files
its dvc.yaml deps name. Checking that a name exists imports none: the validate stage lists the files.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from mnist_pipeline import architectures
from mnist_pipeline.errors import PipelineError

Builder = TypeVar("Builder", bound=Callable[[], nn.Module])
SHARED = "shared"  # architectures/shared.py: what the architecture modules import, not one itself


@dataclass(frozen=True)
class ModelCard:
    """A registered architecture: how to build it, and what dvc.yaml's artifacts: says of it."""

    name: str
    build: Callable[[], nn.Module]
    description: str  # the artifact's desc
    labels: tuple[str, ...]  # the artifact's labels
    parameters: int  # worked out from the layer list; tests/unit/test_models.py builds the model and counts


_CARDS: dict[str, ModelCard] = {}  # filled by register_model as architecture modules are imported


def register_model(
    name: str, description: str, labels: tuple[str, ...], parameters: int
) -> Callable[[Builder], Builder]:
    """Add the decorated builder (a class or function without arguments) to the registry; each name once."""

    def register(build: Builder) -> Builder:
        if name in _CARDS:
            raise ValueError(f"model {name!r} is already registered (by {_CARDS[name].build.__qualname__})")
        _CARDS[name] = ModelCard(name, build, description, tuple(labels), parameters)
        return build

    return register


class Registry(Mapping[str, ModelCard]):
    """Architecture name → its card; the module of a name is imported when its card is first asked for."""

    def names(self) -> list[str]:
        """The modules in architectures/ (but shared.py), and anything registered from elsewhere, sorted."""
        found = {m.name for m in pkgutil.iter_modules(architectures.__path__) if m.name != SHARED}
        return sorted(found | _CARDS.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> ModelCard:
        if name not in _CARDS:
            if name not in self.names():
                raise KeyError(name)
            importlib.import_module(f"{architectures.__name__}.{name}")
        if name not in _CARDS:
            raise PipelineError(
                f"src/mnist_pipeline/architectures/{name}.py registers no architecture {name!r} (fix: "
                f'decorate its builder with @register_model("{name}", ...), as architectures/mlp.py does)'
            )
        return _CARDS[name]


MODELS = Registry()


def unknown_architecture(arch: object, where: str = "") -> str:
    """The one message for a name the registry lacks; where: what names it (a params key, a model file)."""
    return (
        f"{arch!r}{f' in {where}' if where else ''} is not a registered architecture (fix: name one of "
        f"{', '.join(MODELS)}, or add src/mnist_pipeline/architectures/{arch}.py as the README's \"Adding "
        'a model" says)'
    )


def architecture(arch: str, where: str = "") -> ModelCard:
    """The card of a registered architecture; an unknown name is one error naming the valid ones."""
    if arch not in MODELS:
        raise PipelineError(unknown_architecture(arch, where))
    return MODELS[arch]


def build_model(arch: str) -> nn.Module:
    """Return a freshly initialised model for the registered architecture name."""
    return architecture(arch).build()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
