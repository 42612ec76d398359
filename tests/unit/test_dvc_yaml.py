"""dvc.yaml against the code and params.yaml: every model in every list,
each artifact as its registry card says, and no model named in the hand-written part."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from dvc.parsing.interpolate import to_str

from mnist_pipeline.models import MODELS, ModelCard, register_model
from mnist_tools import dvcgen

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "dvc.yaml").read_text()
DVC = yaml.safe_load(TEXT)
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NAMES = list(PARAMS["models"])
VARS = {name: value for entry in DVC.get("vars", []) for name, value in entry.items()}


def command(stage: str) -> str:
    """A stage's command as DVC runs it: ${var} of dvc.yaml's vars: expanded as DVC expands a mapping."""
    return re.sub(r"\$\{(\w+)\}", lambda m: to_str(VARS[m[1]]), DVC["stages"][stage]["cmd"])


def arguments(stage: str) -> dict[str, list[str]]:
    """A stage's command as option → the values after it."""
    options: dict[str, list[str]] = {}
    current = None
    words = shlex.split(command(stage))
    for word in words[words.index("python") + 2 :]:
        if word.startswith("--"):
            current = options.setdefault(word, [])
        else:
            current.append(word)
    return options


# stage → {option: the file pattern it names}; the fan-in stages read one file per model of params.yaml
FAN_IN = {
    "ensemble": {"--logits": "data/logits/{model}.pt"},
    "summary": {"--metrics": "metrics/{model}.json"},
    "plot": {
        "--metrics": "metrics/{model}.json",
        "--timing": "metrics/timing/{model}.json",
        "--history": "plots/train/{model}.csv",
        "--logits": "data/logits/{model}.pt",
    },
}


@pytest.mark.parametrize("stage", sorted(FAN_IN))
def test_fan_in_stages_read_and_depend_on_every_models_files(stage: str) -> None:
    args, deps = arguments(stage), DVC["stages"][stage]["deps"]
    assert args["--models"] == NAMES, f"{stage} --models: the models of params.yaml, in order"
    patterns = {option: values for option, values in args.items() if any("{model}" in v for v in values)}
    assert patterns == {option: [pattern] for option, pattern in FAN_IN[stage].items()}
    for pattern in FAN_IN[stage].values():
        expected = [pattern.format(model=name) for name in NAMES]
        assert set(expected) <= set(deps), f"{stage}: deps lack {sorted(set(expected) - set(deps))}"
        like = re.compile(re.escape(pattern).replace(re.escape("{model}"), "(\\w+)"))
        named = {m[1] for dep in deps if (m := like.fullmatch(dep))}
        assert named <= {*NAMES, "ensemble"}, f"{stage}: deps name models params.yaml lacks"
    if stage != "ensemble":
        assert args["--ensemble-metrics"] == ["metrics/ensemble.json"] and "metrics/ensemble.json" in deps
    # no folder deps that gather other stages' outputs: a stage reruns only when a file it reads changes
    assert not [dep for dep in deps if not Path(dep).suffix], deps


def test_the_lines_for_each_model_are_what_the_generator_writes() -> None:
    assert dvcgen.render(TEXT, PARAMS) == TEXT, "dvc.yaml is stale: run `make dvc-yaml`"


def test_the_hand_written_part_names_no_model() -> None:
    hand_written = dvcgen.hand_written(TEXT)
    named = {name for name in {*NAMES, *MODELS} if re.search(rf"\b{name}\b", hand_written)}
    assert named == set(), f"dvc.yaml names {sorted(named)} outside the lines `make dvc-yaml` writes"


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
    from mnist_pipeline import models

    monkeypatch.setattr(models, "_CARDS", dict(models._CARDS))  # what the test adds goes away with it
    assert models.MODELS["lenet"].name == "lenet"  # imported, so registered

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
