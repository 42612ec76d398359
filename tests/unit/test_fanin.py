"""The fan-in stages' inputs: --models and one pattern per kind of file, checked against params.yaml."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.fanin import add_model_arguments, check_models, model_files

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser, {"--metrics": "each model's metrics", "--logits": "each model's logits"})
    return parser


def test_each_pattern_names_one_file_per_model_in_the_given_order() -> None:
    args = parser().parse_args(
        ["--models", "mlp", "lenet", "--metrics", "m/{model}.json", "--logits", "l/{model}/{model}.pt"]
    )
    assert args.models == ["mlp", "lenet"]
    assert model_files(args.metrics, args.models) == {
        "mlp": Path("m/mlp.json"),
        "lenet": Path("m/lenet.json"),
    }
    assert list(model_files(args.logits, args.models).values()) == [
        Path("l/mlp/mlp.pt"),
        Path("l/lenet/lenet.pt"),
    ]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (
            ["--metrics", "m/{model}.json", "--logits", "l/{model}.pt"],
            "the following arguments are required: --models",
        ),
        (["--models", "a", "--metrics", "m/a.json", "--logits", "l/{model}.pt"], "'m/a.json' has no {model}"),
        (["--models", "a", "--metrics", "m/{model}.json"], "the following arguments are required: --logits"),
    ],
)
def test_a_missing_option_or_a_pattern_without_model_is_refused(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert problem in capsys.readouterr().err


def test_models_other_than_params_yaml_s_mean_a_stale_dvc_yaml() -> None:
    config = {"models": {"lenet": {"arch": "lenet"}, "mlp": {"arch": "mlp"}}}
    check_models(["lenet", "mlp"], config)
    for names in (["lenet"], ["mlp", "lenet"], ["lenet", "mlp", "cnn2"]):
        with pytest.raises(PipelineError) as error:
            check_models(names, config)
        assert str(error.value) == (
            f"dvc.yaml is stale: it passes the models {', '.join(names)}, but params.yaml's models: are "
            "lenet, mlp (fix: run `make dvc-yaml`, then `dvc repro`)"
        )


def test_a_fan_in_stage_stops_on_a_stale_dvc_yaml_before_reading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    names = list(params["models"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "metrics").mkdir()
    for name in [*names, "ensemble"]:
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"accuracy": 0.9}))
    monkeypatch.chdir(tmp_path)
    argv = [
        "--metrics",
        "metrics/{model}.json",
        "--ensemble-metrics",
        "metrics/ensemble.json",
        "--out",
        "s.json",
    ]
    monkeypatch.setattr(sys, "argv", ["summary.py", "--models", *names[:-1], *argv])
    spec = importlib.util.spec_from_file_location("stage_summary", ROOT / "stages" / "summary.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    with pytest.raises(SystemExit) as exit_info:
        stage.run(stage.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: dvc.yaml is stale: it passes the models {', '.join(names[:-1])}, but")
    assert not (tmp_path / "s.json").exists()
