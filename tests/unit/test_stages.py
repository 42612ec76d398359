"""Stage scripts: bad params are refused before any work, and train's resume fingerprint covers what it must."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
import torch
import yaml

from mnist_pipeline.data import save_split

ROOT = Path(__file__).resolve().parents[2]

def stage_arguments() -> dict[str, list[str]]:
    """Each stage script's arguments as dvc.yaml writes them (the foreach stages for lenet); all paths relative."""
    commands = {}
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        cmd = stage["do"]["cmd"] if "foreach" in stage else stage["cmd"]
        _, script, *args = shlex.split(cmd.replace("${key}", "lenet"))
        commands[Path(script).stem] = args
    return commands


COMMANDS = stage_arguments()

# A mistake in one stage's section, and the one line every stage must answer it with.
MISTAKES = {
    "plot.dpi": ("plot", "dpi", "high", "error: plot.dpi = 'high' is a str; it must be a int"),
    "evaluate typo": ("evaluate", "batch_sise", 1000,
                      "error: unknown key evaluate.batch_sise (did you mean evaluate.batch_size?); valid keys: batch_size"),
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
def test_every_stage_refuses_bad_params_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                        stage: str, mistake: str) -> None:
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
    assert (exit_info.value.code, err, out) == (2, message + "\n", "")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # nothing written, nothing half-made


class Stop(Exception):
    """Raised by the stand-in fit() once the fingerprint is known."""


@pytest.fixture
def train_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A function (params, **patches) → the resume fingerprint stages/train.py computes for lenet on tiny data."""
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", 40), ("val", 10)):
        save_split(tmp_path / "data" / f"{split}.pt",
                   torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8), torch.arange(n) % 10)
    stage = load_stage("train")
    seen: list[str] = []

    def fit(model, recipe, train_data, val_data, seed, eval_batch_size, checkpointer, report):
        seen.append(checkpointer.run_fingerprint)
        raise Stop

    monkeypatch.setattr(stage, "fit", fit)

    def fingerprint(params: dict) -> str:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        argv = ["train.py", "--params", str(tmp_path / "params.yaml"), "--model", "lenet", "--data",
                str(tmp_path / "data"), "--out", str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv"),
                "--checkpoint", str(tmp_path / "ck.pt")]
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


@pytest.mark.parametrize(("path", "value"), [
    ("models.lenet.lr", 0.0123), ("models.lenet.epochs", 3), ("models.lenet.bf16", True), ("seed", 7),
    ("train.threads", 1), ("train.eval_batch_size", 500),
])
def test_resume_fingerprint_changes_with_what_changes_the_run(train_stage, path: str, value: object) -> None:
    _, fingerprint, _ = train_stage
    base = fingerprint(committed_params())
    assert fingerprint(committed_params()) == base  # stable for the same inputs
    assert fingerprint(edited(path, value)) != base


@pytest.mark.parametrize(("path", "value"), [
    ("models.cnn2.lr", 0.0123), ("evaluate.batch_size", 10), ("plot.dpi", 50), ("preprocess.val_size", 100),
])
def test_resume_fingerprint_ignores_what_this_run_does_not_read(train_stage, path: str, value: object) -> None:
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


def test_resume_fingerprint_changes_with_code_torch_and_device(train_stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage, fingerprint, _ = train_stage
    base = fingerprint(committed_params())
    monkeypatch.setattr(stage, "package_digest", lambda: "edited source")
    code = fingerprint(committed_params())
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    version = fingerprint(committed_params())
    monkeypatch.setattr(stage, "select_device", lambda name: torch.device("meta"))
    device = fingerprint(committed_params())
    assert len({base, code, version, device}) == 4
