"""Stage scripts: bad params are refused before any work,
and train's resume fingerprint covers what it must."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch
import yaml
from dvc.parsing.interpolate import to_str

from mnist_pipeline.artifacts import ModelFile
from mnist_pipeline.data import save_split
from mnist_pipeline.environment import bit_class
from mnist_pipeline.inference import Preprocessing
from mnist_pipeline.params import load_params, model_names, model_params
from mnist_pipeline.training import Epoch


@pytest.fixture(autouse=True)
def keep_the_fill_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages turn deterministic mode's NaN fill off process-wide: give later tests the flag as it was."""
    flag = torch.utils.deterministic.fill_uninitialized_memory
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", flag)


ROOT = Path(__file__).resolve().parents[2]


def stage_arguments() -> dict[str, list[str]]:
    """Each stage script's arguments as dvc.yaml writes them (the foreach stages for lenet; the fan-in
    stages' ${fan_in} expanded from dvc.yaml's vars: as DVC expands it); all paths relative."""
    commands = {}
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {name: value for entry in dvc_yaml.get("vars", []) for name, value in entry.items()}
    for stage in dvc_yaml["stages"].values():
        cmd = (stage["do"]["cmd"] if "foreach" in stage else stage["cmd"]).replace("${key}", "lenet")
        words = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: to_str(variables[m[1]]), cmd))
        script, *args = words[words.index("python") + 1 :]
        commands[Path(script).stem] = args
    return commands


COMMANDS = stage_arguments()

PARAMS_FIX = (
    " (fix: correct it in params.yaml or in your `dvc exp run -S` override; "
    "`git show HEAD:params.yaml > params.yaml` restores the committed file)"
)
# what each stage's error line ends with: how to get back the outputs DVC deleted before running it
RESTORE = {
    "validate": "",  # it deletes nothing: its marker is persist
    "download": "`dvc checkout download`",
    "preprocess": "`dvc checkout preprocess`",
    "train": "`dvc checkout train@lenet`",
    "evaluate": "`dvc checkout evaluate@lenet`",
    "ensemble": "`dvc checkout ensemble` and `git checkout HEAD -- metrics/ensemble.json "
    "models/ensemble.json`",
    "publish": "`dvc checkout publish` and `git checkout HEAD -- "
    + " ".join(f"metrics/{name}.json" for name in model_names(load_params(ROOT / "params.yaml")))
    + " plots/train plots/per_class plots/predictions metrics/timing metrics/env/train metrics/env/evaluate`",
    "summary": "`dvc checkout summary` and `git checkout HEAD -- metrics/summary.json`",
    "plot": "`dvc checkout plot` and `git checkout HEAD -- plots/figures plots/leaderboard.csv "
    "plots/leaderboard.md`",
}
# A mistake in one stage's section, and the one line every stage must answer it with.
MISTAKES = {
    "plot.dpi": ("plot", "dpi", "high", "error: plot.dpi = 'high' is a str; it must be a int" + PARAMS_FIX),
    "evaluate typo": (
        "evaluate",
        "batch_sise",
        1000,
        "error: unknown key evaluate.batch_sise (did you mean "
        "evaluate.batch_size?); valid keys: batch_size" + PARAMS_FIX,
    ),
}


def committed_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def load_stage(name: str) -> ModuleType:
    """Import stages/<name>.py as a module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
@pytest.mark.parametrize("stage", sorted(COMMANDS))
def test_every_stage_refuses_bad_params_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, stage: str, mistake: str
) -> None:
    section, key, value, message = MISTAKES[mistake]
    params = committed_params()
    params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_MIRROR", "http://127.0.0.1:9/")  # download would reach for this closed port
    monkeypatch.setattr(sys, "argv", [f"{stage}.py", *COMMANDS[stage]])
    module = load_stage(stage)
    with pytest.raises(SystemExit) as exit_info:
        module.run(module.main)  # what `python stages/<stage>.py` runs
    out, err = capsys.readouterr()
    restore = f"; its last committed outputs come back with {RESTORE[stage]}" if RESTORE[stage] else ""
    assert (exit_info.value.code, err, out) == (2, message + restore + "\n", "")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # nothing written, nothing half-made


def test_a_device_this_machine_lacks_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    params = committed_params()
    params["train"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        torch.cuda, "is_available", lambda: False
    )  # as on our CPU machines, also where CUDA exists
    monkeypatch.setattr(sys, "argv", ["train.py", *COMMANDS["train"]])
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    module = load_stage("train")
    with pytest.raises(SystemExit) as exit_info:
        module.run(module.main)
    torch.set_num_threads(threads)  # the stage pins both process-wide before it looks for the device
    torch.use_deterministic_algorithms(deterministic)
    out, err = capsys.readouterr()
    assert (exit_info.value.code, out) == (2, "")
    assert err == (
        "error: train.device is 'cuda' but this machine has no CUDA device "
        "(fix: set train.device: auto or cpu in params.yaml)"
        f"; its last committed outputs come back with {RESTORE['train']}\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


# The first input each stage reads, and the stage that writes it.
FIRST_INPUT = {
    "preprocess": ("data/raw/MNIST/raw", "download"),
    "train": ("data/processed/train.pt", "preprocess"),
    "evaluate": ("models/lenet.pt", "train@lenet"),
    "ensemble": ("data/logits/resnet18.pt", "evaluate@resnet18"),
    "summary": ("metrics/resnet18.json", "evaluate@resnet18"),
    "plot": ("metrics/resnet18.json", "evaluate@resnet18"),
}


@pytest.mark.parametrize("stage", sorted(FIRST_INPUT))
def test_a_missing_input_names_the_stage_that_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, stage: str
) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params(), sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{stage}.py", *COMMANDS[stage]])
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    module = load_stage(stage)
    with pytest.raises(SystemExit) as exit_info:
        module.run(module.main)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    out, err = capsys.readouterr()
    path, writer = FIRST_INPUT[stage]
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    restore = f"; its last committed outputs come back with {RESTORE[stage]}\n"
    assert err.endswith(restore), err
    err = err.removesuffix(restore) + "\n"
    if stage == "preprocess":
        assert (
            err == "error: no MNIST files under data/raw/MNIST/raw: stage download writes them "
            "(fix: run `dvc repro download`)\n"
        )
    elif stage == "evaluate":
        assert err == (
            f"error: {path} not found: stage {writer} writes it (fix: train it with `dvc repro {writer}`, "
            "or fetch it with `dvc pull` or `dvc artifacts get`)\n"
        )
    else:
        assert err == f"error: {path} not found: stage {writer} writes it (fix: run `dvc repro {writer}`)\n"
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


class Stop(Exception):
    """Raised by the stand-in fit_epochs() once the fingerprint is known."""


@pytest.fixture
def train_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A function (params, **patches) → the resume fingerprint stages/train.py computes
    for lenet on tiny data."""
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", 40), ("val", 10)):
        save_split(
            tmp_path / "data" / f"{split}.pt",
            torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8),
            torch.arange(n) % 10,
        )
    stage = load_stage("train")
    seen: list[str] = []

    def fit_epochs(model, recipe, train_data, val_data, seed, eval_batch_size, checkpointer, progress):
        seen.append(checkpointer.run_fingerprint)
        raise Stop

    monkeypatch.setattr("mnist_pipeline.training.fit_epochs", fit_epochs)

    def fingerprint(params: dict) -> str:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        argv = [
            "train.py",
            "--params",
            str(tmp_path / "params.yaml"),
            "--model",
            "lenet",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "m.pt"),
            "--history",
            str(tmp_path / "h.csv"),
            "--checkpoint",
            str(tmp_path / "ck.pt"),
            "--env",
            str(tmp_path / "env.json"),
        ]
        with monkeypatch.context() as m:
            m.setattr(sys, "argv", argv)
            with pytest.raises(Stop):
                stage.main()
        return seen[-1]

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield stage, fingerprint, tmp_path / "data"
    torch.set_num_threads(threads)  # the stage pins threads and deterministic algorithms process-wide
    torch.use_deterministic_algorithms(deterministic)


def edited(path: str, value: object) -> dict:
    params = committed_params()
    *parents, key = path.split(".")
    section = params
    for part in parents:
        section = section[part]
    section[key] = value
    return params


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("models.lenet.lr", 0.0123),
        ("models.lenet.epochs", 3),
        ("models.lenet.bf16", True),
        ("seed", 7),
        ("models.lenet.seed_offset", 1),  # its own seed
        ("train.threads", 1),
        ("train.eval_batch_size", 500),
    ],
)
def test_resume_fingerprint_changes_with_what_changes_the_run(train_stage, path: str, value: object) -> None:
    _, fingerprint, _ = train_stage
    base = fingerprint(committed_params())
    assert fingerprint(committed_params()) == base  # stable for the same inputs
    assert fingerprint(edited(path, value)) != base


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("models.cnn2.lr", 0.0123),
        ("models.cnn2.seed_offset", 5),
        ("evaluate.batch_size", 10),
        ("plot.dpi", 50),
        ("preprocess.val_size", 100),
    ],
)
def test_resume_fingerprint_ignores_what_this_run_does_not_read(
    train_stage, path: str, value: object
) -> None:
    _, fingerprint, _ = train_stage
    assert fingerprint(edited(path, value)) == fingerprint(committed_params())


@pytest.mark.parametrize("split", ["train", "val"])
def test_resume_fingerprint_changes_with_the_data(train_stage, split: str) -> None:
    _, fingerprint, data = train_stage
    base = fingerprint(committed_params())
    images, labels = torch.load(data / f"{split}.pt", weights_only=True).values()
    images[0, 0, 0] ^= 1  # one pixel
    save_split(data / f"{split}.pt", images, labels)
    assert fingerprint(committed_params()) != base


def test_resume_fingerprint_changes_with_code_torch_and_device(
    train_stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage, fingerprint, _ = train_stage
    base = fingerprint(committed_params())
    monkeypatch.setattr(stage, "package_digest", lambda: "edited source")
    code = fingerprint(committed_params())
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    version = fingerprint(committed_params())
    monkeypatch.setattr("mnist_pipeline.runtime.select_device", lambda name: torch.device("meta"))
    device = fingerprint(committed_params())
    assert len({base, code, version, device}) == 4


def test_train_rewrites_the_history_after_every_epoch_and_writes_a_model_file_that_explains_itself(
    train_stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    stage, _, data = train_stage
    history_csv, seen, weights = tmp_path / "plots" / "h.csv", [], {}

    def fit_epochs(model, recipe, train_data, val_data, seed, eval_batch_size, checkpointer, progress):
        rows = [
            {
                "epoch": e,
                "lr": 0.1,
                "train_loss": 1.0 / e,
                "train_acc": 0.5,
                "val_loss": 1.0,
                "val_acc": 0.25 * e,
                "seconds": 1.5,
            }
            for e in (1, 2, 3)
        ]
        weights.update({k: v + 1 for k, v in model.state_dict().items() if v.is_floating_point()})
        for n in (1, 2, 3):  # two restored from a checkpoint, then one trained
            yield Epoch(rows[n - 1], rows[:n], weights, best_epoch=n, resumed=n < 3)
            seen.append(pd.read_csv(history_csv))

    monkeypatch.setattr("mnist_pipeline.training.fit_epochs", fit_epochs)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params(), sort_keys=False))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train.py",
            "--params",
            str(tmp_path / "params.yaml"),
            "--model",
            "lenet",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m.pt"),
            "--history",
            str(history_csv),
            "--checkpoint",
            str(tmp_path / "ck" / "lenet.pt"),
            "--env",
            str(tmp_path / "metrics" / "env" / "lenet.json"),
        ],
    )
    stage.main()
    assert [list(frame["epoch"]) for frame in seen] == [[1], [1, 2], [1, 2, 3]]  # on disk while training runs
    assert list(pd.read_csv(history_csv)["val_acc"]) == [0.25, 0.5, 0.75]
    assert sorted(p.name for p in history_csv.parent.iterdir()) == ["h.csv"]  # no scratch file beside it
    out = capsys.readouterr().out.splitlines()
    printed = [line for line in out if line.startswith("lenet epoch")]
    # said when the restored epochs are shown, before any training: not after the next epoch trained
    assert out.index(f"lenet: resuming from {tmp_path / 'ck' / 'lenet.pt'}") == out.index(printed[0]) - 1
    assert [line.split()[:3] for line in printed] == [
        ["lenet", "epoch", "1"],
        ["lenet", "epoch", "2"],
        ["lenet", "epoch", "3"],
    ]  # each once
    assert [line.endswith("(restored)") for line in printed] == [True, True, False]
    # the machine behind the weights, for the PR summary (outside the metrics that dvc metrics diff compares)
    env = json.loads((tmp_path / "metrics" / "env" / "lenet.json").read_text())
    assert env["device"] == "cpu" and env["threads"] == committed_params()["train"]["threads"]
    assert env["torch"] == torch.__version__ and env["cpu_model"] and env["bf16_autocast"] is False
    assert env["fp32_precision"] == {"cudnn_conv": "ieee", "cuda_matmul": "ieee", "onednn": "none"}
    assert (env["numerics"], env["aten_cpu_capability"], env["onednn_isa"], env["mkl_cbwr"]) == (
        "portable",
        "AVX2",
        "Intel AVX2",
        "COMPATIBLE",
    )
    # the model file: the best weights, and the recipe, seed, data and machine that made them
    record = ModelFile.load(tmp_path / "m.pt")
    recipe = model_params(committed_params(), "lenet")
    assert (record.name, record.arch, record.seed, record.epochs_run, record.best_epoch) == (
        "lenet",
        "lenet",
        committed_params()["seed"],
        3,
        3,
    )
    assert record.recipe == dataclasses.asdict(recipe)
    # what decided its bits, and not the CPU's name: the same file comes out of any x86-64 CPU in portable
    assert record.environment == bit_class(env) and "cpu_model" not in record.environment
    assert record.preprocessing == Preprocessing(recipe.norm_mean, recipe.norm_std, recipe.channels_last)
    assert record.data == {
        split: hashlib.md5((data / f"{split}.pt").read_bytes()).hexdigest() for split in ("train", "val")
    }
    assert record.weights.keys() == weights.keys() and all(
        torch.equal(record.weights[k], weights[k]) for k in weights
    )


def test_validate_writes_the_same_marker_for_any_valid_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # download depends on the marker: a valid edit must leave it byte-identical, or MNIST is fetched again
    monkeypatch.chdir(tmp_path)
    module = load_stage("validate")
    markers = []
    for params in (committed_params(), edited("models.lenet.lr", 0.5), edited("plot.dpi", 50)):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        monkeypatch.setattr(sys, "argv", ["validate.py", *COMMANDS["validate"]])
        module.run(module.main)
        markers.append((tmp_path / "data" / "params.ok").read_bytes())
    assert markers == [markers[0]] * 3 and markers[0]


def test_validate_checks_architecture_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(edited("models.lenet.arch", "lenet5"), sort_keys=False)
    )
    monkeypatch.setattr(sys, "argv", ["validate.py", *COMMANDS["validate"]])
    module = load_stage("validate")
    with pytest.raises(SystemExit):
        module.run(module.main)
    assert "models.lenet.arch = 'lenet5' is not valid" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
