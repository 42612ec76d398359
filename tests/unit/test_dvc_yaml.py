"""dvc.yaml against the code and params.yaml: every model in every list,
each artifact as its registry card says."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from mnist_pipeline.models import MODELS, ModelCard, register_model

ROOT = Path(__file__).resolve().parents[2]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NAMES = list(PARAMS["models"])


def arguments(stage: str) -> dict[str, list[str]]:
    """A stage's command as option → the values after it."""
    options: dict[str, list[str]] = {}
    current = None
    words = shlex.split(DVC["stages"][stage]["cmd"])
    for word in words[words.index("python") + 2 :]:
        if word.startswith("--"):
            current = options.setdefault(word, [])
        else:
            current.append(word)
    return options


# stage → (option, file pattern, whether the ensemble is a member too)
FAN_IN = {
    "ensemble": [("--logits", "data/logits/{}.pt", False)],
    "summary": [("--metrics", "metrics/{}.json", True)],
    "plot": [
        ("--metrics", "metrics/{}.json", True),
        ("--timing", "metrics/timing/{}.json", False),
        ("--history", "plots/train/{}.csv", False),
        ("--logits", "data/logits/{}.pt", False),
    ],
}


@pytest.mark.parametrize("stage", sorted(FAN_IN))
def test_fan_in_stages_read_and_depend_on_every_models_files(stage: str) -> None:
    args, deps = arguments(stage), DVC["stages"][stage]["deps"]
    for option, pattern, with_ensemble in FAN_IN[stage]:
        expected = [pattern.format(name) for name in [*NAMES, *(["ensemble"] if with_ensemble else [])]]
        assert args[option] == expected, f"{stage} {option}: the models of params.yaml, in order"
        assert set(expected) <= set(deps), f"{stage}: deps lack {sorted(set(expected) - set(deps))}"
    # no folder deps that gather other stages' outputs: a stage reruns only when a file it reads changes
    assert not [dep for dep in deps if not Path(dep).suffix], deps


def plotted_files(plot: dict | str) -> list[str]:
    if isinstance(plot, str):
        return [plot]
    (definition,) = plot.values()
    return list(definition["y"])


@pytest.mark.parametrize(
    ("pattern", "with_ensemble"),
    [
        ("plots/train/{}.csv", False),
        ("plots/per_class/{}.csv", False),
        ("plots/predictions/{}.csv", True),
        ("plots/figures/mistakes_{}.png", False),
    ],
)
def test_every_model_is_plotted(pattern: str, with_ensemble: bool) -> None:
    files = [f for plot in DVC["plots"] for f in plotted_files(plot)]
    for name in [*NAMES, *(["ensemble"] if with_ensemble else [])]:
        assert pattern.format(name) in files, f"dvc.yaml plots: lack {pattern.format(name)}"
    assert {f for f in files if f.startswith(pattern.split("{}")[0])} == {
        pattern.format(n) for n in [*NAMES, *(["ensemble"] if with_ensemble else [])]
    }  # and no model that is gone


def test_every_model_is_an_artifact_described_by_its_card() -> None:
    assert list(DVC["artifacts"]) == NAMES
    for name, artifact in DVC["artifacts"].items():
        card = MODELS[PARAMS["models"][name]["arch"]]
        assert artifact == {
            "path": f"models/{name}.pt",
            "type": "model",
            "desc": card.description,
            "labels": list(card.labels),
        }, name


def test_every_registered_architecture_has_a_card() -> None:
    assert {recipe["arch"] for recipe in PARAMS["models"].values()} <= set(MODELS)
    for name, card in MODELS.items():
        assert (
            isinstance(card, ModelCard) and card.name == name and card.description and "mnist" in card.labels
        )


def test_a_name_is_registered_once(monkeypatch) -> None:
    monkeypatch.setattr("mnist_pipeline.models.MODELS", dict(MODELS))  # what the test adds goes away with it
    from mnist_pipeline import models

    @register_model("extra", "a test model", ("test",), parameters=0)
    def extra():
        return None

    assert models.MODELS["extra"] == ModelCard("extra", extra, "a test model", ("test",), 0)
    with pytest.raises(
        ValueError, match=r"model 'extra' is already registered \(by test_a_name_is_registered_once"
    ):
        register_model("extra", "another", (), 0)(lambda: None)
    with pytest.raises(ValueError, match="model 'lenet' is already registered"):
        register_model("lenet", "another", (), 0)(lambda: None)
    assert models.MODELS["extra"].build is extra
