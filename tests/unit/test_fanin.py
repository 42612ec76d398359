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
from mnist_pipeline.fanin import (
    Copy,
    add_model_arguments,
    check_models,
    model_files,
    planned_copies,
    restorable,
)

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


def project_params(folder: Path) -> list[str]:
    """params.yaml as committed, written to folder; its models' names."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return list(params["models"])


def load_stage(name: str):
    """stages/<name>.py as a module, its main() not run."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    return stage


def test_a_fan_in_stage_stops_on_a_stale_dvc_yaml_before_reading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    names = project_params(tmp_path)
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
    stage = load_stage("summary")
    with pytest.raises(SystemExit) as exit_info:
        stage.run(stage.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: dvc.yaml is stale: it passes the models {', '.join(names[:-1])}, but")
    assert not (tmp_path / "s.json").exists()


def test_a_copy_naming_model_in_all_three_is_made_once_per_model_and_one_without_once() -> None:
    specs = [
        ["evaluate@{model}", "d/{model}/m.json", "metrics/{model}.json"],
        ["ensemble", "d/e.csv", "p/x/e.csv"],
    ]
    assert planned_copies(specs, ["mlp", "lenet"]) == [
        Copy("evaluate@mlp", Path("d/mlp/m.json"), Path("metrics/mlp.json")),
        Copy("evaluate@lenet", Path("d/lenet/m.json"), Path("metrics/lenet.json")),
        Copy("ensemble", Path("d/e.csv"), Path("p/x/e.csv")),
    ]


@pytest.mark.parametrize(
    "spec", [["train@{model}", "d/h.csv", "p/{model}.csv"], ["train", "d/{model}.csv", "p/{model}.csv"]]
)
def test_a_copy_naming_model_in_only_some_parts_is_refused(spec: list[str]) -> None:
    with pytest.raises(
        PipelineError, match=r"must be in the stage, the source and the destination, or in none"
    ):
        planned_copies([spec], ["mlp"])


def test_what_git_restores_is_each_destination_folder_but_the_top_level_files_themselves() -> None:
    specs = [
        ["evaluate@{model}", "d/{model}/m.json", "metrics/{model}.json"],
        ["train@{model}", "d/{model}/h.csv", "plots/train/{model}.csv"],
        ["ensemble", "d/e.csv", "plots/train/e.csv"],
        ["train@{model}", "d/{model}/env.json", "metrics/env/train/{model}.json"],
    ]
    assert restorable(planned_copies(specs, ["mlp", "lenet"])) == [
        Path("metrics/mlp.json"),  # metrics/ holds other stages' files: never `git checkout metrics`
        Path("metrics/lenet.json"),
        Path("plots/train"),
        Path("metrics/env/train"),
    ]


def test_publish_copies_each_file_byte_for_byte_and_a_missing_one_names_its_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    names = project_params(tmp_path)
    for name in names:
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "h.csv").write_bytes(f"epoch,x\n1,{name}\r\n".encode())
    monkeypatch.chdir(tmp_path)
    stage = load_stage("publish")
    copy = ["--copy", "train@{model}", "d/{model}/h.csv", "plots/train/{model}.csv"]
    monkeypatch.setattr(sys, "argv", ["publish.py", "--models", *names, *copy])
    stage.run(stage.main)
    for name in names:
        assert (tmp_path / "plots/train" / f"{name}.csv").read_bytes() == f"epoch,x\n1,{name}\r\n".encode()
    (tmp_path / "d" / names[-1] / "h.csv").unlink()
    monkeypatch.setattr(sys, "argv", ["publish.py", "--models", *names, *copy])
    with pytest.raises(SystemExit) as exit_info:
        stage.run(stage.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(
        f"error: d/{names[-1]}/h.csv not found: stage train@{names[-1]} writes it "
        f"(fix: run `dvc repro train@{names[-1]}`)"
    )
