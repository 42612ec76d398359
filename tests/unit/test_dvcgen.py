"""`make dvc-yaml`: dvc.yaml's lines for each model, from params.yaml and the registry; the rest kept."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from mnist_pipeline import models
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.models import MODELS, ModelCard
from mnist_tools import dvcgen

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NAMES = list(PARAMS["models"])

TEXT = """\
top:  # a hand-written comment
  # for each model in params.yaml, `make dvc-yaml` writes:
  #   - data/{model}.pt
  - stale/line.pt
  # end of the lines for each model
  - kept.pt
cards:
  # for each model in params.yaml, `make dvc-yaml` writes (a note):
  #   {model}:
  #     arch: {arch}
  #     desc: {description}
  #     labels: {labels}
  # end of the lines for each model
"""


def config(**models: str) -> dict:
    return {"models": {name: {"arch": arch} for name, arch in models.items()}}


def test_each_region_gets_its_template_once_per_model_in_params_order() -> None:
    rendered = dvcgen.render(TEXT, config(lenet="lenet", twin="lenet", mlp="mlp"))
    assert rendered.split("\n")[:9] == [
        "top:  # a hand-written comment",
        "  # for each model in params.yaml, `make dvc-yaml` writes:",
        "  #   - data/{model}.pt",
        "  - data/lenet.pt",
        "  - data/twin.pt",
        "  - data/mlp.pt",
        "  # end of the lines for each model",
        "  - kept.pt",
        "cards:",
    ]
    parsed = yaml.safe_load(rendered)
    assert parsed["top"] == ["data/lenet.pt", "data/twin.pt", "data/mlp.pt", "kept.pt"]
    assert list(parsed["cards"]) == ["lenet", "twin", "mlp"]
    for name, arch in (("lenet", "lenet"), ("twin", "lenet"), ("mlp", "mlp")):
        assert parsed["cards"][name] == {
            "arch": arch,
            "desc": MODELS[arch].description,
            "labels": list(MODELS[arch].labels),
        }
    assert dvcgen.render(rendered, config(lenet="lenet", twin="lenet", mlp="mlp")) == rendered
    assert dvcgen.hand_written(rendered) == dvcgen.hand_written(TEXT)
    assert "stale" not in rendered and "lenet" not in dvcgen.hand_written(rendered)


def test_a_card_whose_words_are_yaml_syntax_reads_back_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    description = "odd: a #hash, [brackets], 'quotes' and \"double\" ones"
    labels = ("mnist", "a, b", "yes", "007", "[x]")
    monkeypatch.setitem(models._CARDS, "odd", ModelCard("odd", lambda: None, description, labels, 0))
    parsed = yaml.safe_load(dvcgen.render(TEXT, config(odd="odd")))
    assert parsed["cards"]["odd"] == {"arch": "odd", "desc": description, "labels": list(labels)}


def test_the_projects_dvc_yaml_takes_a_new_model_in_every_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        models._CARDS, "tiny", ModelCard("tiny", lambda: None, "a tiny test model", ("mnist",), 0)
    )
    params = {"models": {**PARAMS["models"], "tiny": {"arch": "tiny"}}}
    text = (ROOT / "dvc.yaml").read_text()
    rendered = yaml.safe_load(dvcgen.render(text, params))
    assert rendered["vars"][0]["fan_in"]["models"] == [*NAMES, "tiny"]
    stages = rendered["stages"]
    assert "data/logits/tiny.pt" in stages["ensemble"]["deps"]
    assert "metrics/tiny.json" in stages["summary"]["deps"]
    assert {
        "metrics/tiny.json",
        "metrics/timing/tiny.json",
        "plots/train/tiny.csv",
        "data/logits/tiny.pt",
    } <= set(stages["plot"]["deps"])
    charts = [plot for plot in rendered["plots"] if isinstance(plot, dict)]
    assert all(any("/tiny.csv" in path for path in [*chart.values()][0]["y"]) for chart in charts)
    assert "plots/figures/mistakes_tiny.png" in rendered["plots"]
    assert rendered["artifacts"]["tiny"] == {
        "path": "models/tiny.pt",
        "type": "model",
        "desc": "a tiny test model",
        "labels": ["mnist"],
    }
    assert dvcgen.hand_written(dvcgen.render(text, params)) == dvcgen.hand_written(text)


def test_dvc_runs_a_new_models_stages_before_the_fan_in_stages(tmp_path: Path) -> None:
    from dvc.repo import Repo

    params = {**PARAMS, "models": {**PARAMS["models"], "twin": {**PARAMS["models"]["lenet"], "seed": 1}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text(dvcgen.render((ROOT / "dvc.yaml").read_text(), params))
    with Repo.init(str(tmp_path), no_scm=True) as repo:
        stages = {stage.name: stage for stage in repo.index.stages}
        graph = repo.index.graph
        for fan_in in ("ensemble", "publish", "summary", "plot"):
            assert f"--models {' '.join(NAMES)} twin " in stages[fan_in].cmd
        for stage, dep in [
            ("ensemble", "evaluate@twin"),  # an edge: stage → its dep
            ("publish", "evaluate@twin"),
            ("publish", "train@twin"),
            ("summary", "publish"),
            ("plot", "publish"),
        ]:
            assert graph.has_edge(stages[stage], stages[dep]), (stage, dep)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "a:\n  # for each model in params.yaml, `make dvc-yaml` writes:\n  - x\n",
            "dvc.yaml line 2: no template line",
        ),
        (
            "a:\n  # for each model in params.yaml, `make dvc-yaml` writes:\n  #   - {model}\n  - x\n",
            "dvc.yaml line 2: no `  # end of the lines for each model` line closes these lines",
        ),
        ("a:\n  - x\n  # end of the lines for each model\n", "dvc.yaml line 3: `# end of the lines"),
        (
            "a:\n  # for each model in params.yaml, `make dvc-yaml` writes:\n  #   - {name}\n"
            "  # end of the lines for each model\n",
            "dvc.yaml line 3: unknown placeholder {name}, not one of {model}, {arch}, {description}, "
            "{labels} (",
        ),
        (
            "a:\n  # for each model in params.yaml, `make dvc-yaml` writes:\n  #   - {model}: [\n"
            "  # end of the lines for each model\n",
            "dvc.yaml as written for the models is not YAML",
        ),
    ],
)
def test_a_broken_region_is_one_line_naming_the_line(text: str, problem: str) -> None:
    with pytest.raises(PipelineError) as error:
        dvcgen.render(text, config(lenet="lenet"))
    assert str(error.value).startswith(problem) and "\n" not in str(error.value)
    assert str(error.value).endswith(
        "(fix: correct the lines after `for each model in params.yaml` in dvc.yaml)"
    )


def test_an_unregistered_arch_or_a_model_named_ensemble_is_refused() -> None:
    with pytest.raises(
        PipelineError, match=r"'lenett' in models.new.arch is not a registered architecture \(fix: name one"
    ):
        dvcgen.render(TEXT, config(new="lenett"))
    with pytest.raises(PipelineError, match="a model may not be named ensemble"):
        dvcgen.render(TEXT, config(ensemble="lenet"))


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["dvcgen", *args])
    with pytest.raises(SystemExit) as exit_info:
        dvcgen.run(dvcgen.main)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out + err


def test_check_is_one_line_and_exit_1_until_the_lines_are_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config(lenet="lenet", mlp="mlp")))
    (tmp_path / "dvc.yaml").write_text(TEXT)
    code, out = run_main(monkeypatch, capsys, "--repo", str(tmp_path), "--check")
    assert (code, out) == (1, "dvc.yaml is stale: run `make dvc-yaml` (models in params.yaml: lenet, mlp)\n")
    assert (tmp_path / "dvc.yaml").read_text() == TEXT
    code, out = run_main(monkeypatch, capsys, "--repo", str(tmp_path), "--quiet")  # as make repro runs it
    assert (code, out) == (
        0,
        f"{tmp_path / 'dvc.yaml'}: rewrote the lines for each model (lenet, mlp) from params.yaml: commit it "
        "with params.yaml\n",
    )
    assert (tmp_path / "dvc.yaml").read_text() == dvcgen.render(TEXT, config(lenet="lenet", mlp="mlp"))
    code, out = run_main(monkeypatch, capsys, "--repo", str(tmp_path), "--check")
    assert (code, out) == (0, f"{tmp_path / 'dvc.yaml'} is current\n")
    code, out = run_main(monkeypatch, capsys, "--repo", str(tmp_path))
    assert (code, out) == (0, f"{tmp_path / 'dvc.yaml'}: already had the lines for each model (lenet, mlp)\n")
    assert run_main(monkeypatch, capsys, "--repo", str(tmp_path), "--quiet") == (0, "")


def test_the_committed_dvc_yaml_is_current() -> None:
    assert dvcgen.stale_message(ROOT) is None
