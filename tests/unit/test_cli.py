"""Process set-up shared by the stage scripts."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_pipeline import cli, files, runtime


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_every_allocator_setting() -> None:
    assert runtime.keep_freed_memory() is True


def test_without_glibc_nothing_is_set_and_false_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert runtime.keep_freed_memory() is False


class RecordingLibc:
    """A libc whose mallopt records each call and rejects the options in `rejected`."""

    def __init__(self, rejected: set[int]) -> None:
        self.rejected, self.calls = rejected, []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return 0 if option in self.rejected else 1


def test_all_three_settings_with_their_values(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = RecordingLibc(set())
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    assert runtime.keep_freed_memory() is True
    # glibc's numbers from malloc.h; sizes in bytes
    assert libc.calls == [(-3, 256 << 20), (-1, 256 << 20), (-2, 64 << 20)]


@pytest.mark.parametrize("option", [-3, -1, -2])
def test_any_rejected_setting_makes_it_false(monkeypatch: pytest.MonkeyPatch, option: int) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda name: RecordingLibc({option}))
    assert runtime.keep_freed_memory() is False


TRAIN_AND_DIGEST = """
import hashlib, sys, torch
from mnist_pipeline import runtime
from mnist_pipeline.params import ModelParams
from mnist_pipeline.training import train_recipe
if sys.argv[1] == "on":
    assert runtime.keep_freed_memory()
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
images, labels = torch.randint(0, 256, (320, 28, 28), generator=g, dtype=torch.uint8), torch.arange(320) % 10
recipe = ModelParams(
    arch="cnn2", optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, epochs=1, rotate_deg=8
)
result = train_recipe(recipe, 0, (images[:256], labels[:256]), (images[256:], labels[256:]), 64)
print(hashlib.sha256(b"".join(t.numpy().tobytes() for t in result.best_state.values())).hexdigest())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_allocator_settings_change_no_weight() -> None:
    """Training with the settings gives the same bytes as without
    (each in its own process: they are process-wide)."""
    # batch 128 of cnn2 activations (11 MiB per conv output) is far above glibc's default mmap threshold
    digests = [
        subprocess.run(
            [sys.executable, "-c", TRAIN_AND_DIGEST, flag], check=True, capture_output=True, text=True
        ).stdout
        for flag in ("off", "on")
    ]
    assert digests[0] == digests[1] and len(digests[0].strip()) == 64


def test_read_logits_gives_val_and_test_and_names_the_stage_for_a_missing_or_old_file(tmp_path: Path) -> None:
    import torch

    from mnist_pipeline.errors import PipelineError

    path = tmp_path / "lenet.pt"
    saved = {"val": torch.zeros(2, 10), "test": torch.ones(3, 10)}
    torch.save(saved, path)
    got = files.read_logits(path, made_by="evaluate@lenet")
    assert torch.equal(got["val"], saved["val"]) and torch.equal(got["test"], saved["test"])
    with pytest.raises(PipelineError, match=r"not found: stage evaluate@lenet writes it"):
        files.read_logits(tmp_path / "missing.pt", made_by="evaluate@lenet")
    torch.save(torch.ones(3, 10), path)  # test logits alone, as evaluate wrote them before val logits
    with pytest.raises(PipelineError) as info:
        files.read_logits(path, made_by="evaluate@lenet")
    assert str(info.value) == (
        f"{path} does not hold val and test logits (fix: rerun it with `dvc repro -f evaluate@lenet`)"
    )


def test_ctrl_c_is_one_line_with_the_resume_command(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> None:
        cli.stage_outputs(
            "train@lenet", Path("plots/train/lenet.csv"), resume="`dvc repro train@lenet` resumes"
        )
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run(interrupted)
    out, err = capsys.readouterr()
    cli.stage_outputs("")  # the next test starts as a fresh process would
    assert (exit_info.value.code, out) == (130, "")
    assert err.strip() == "interrupted: train@lenet stopped; `dvc repro train@lenet` resumes"


def test_the_resume_advice_follows_how_the_run_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = Path("checkpoints/lenet.pt")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert cli.resume_advice("train@lenet", checkpoint) == (
        "`dvc repro train@lenet` resumes after the last finished epoch (checkpoints/lenet.pt)"
    )
    # `dvc exp run` in the workspace: DVC names the experiment, and DVC_ROOT is where the stage runs
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-rams")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.resume_advice("train@lenet", checkpoint) == (
        "the same `dvc exp run` command resumes it after the last finished epoch (checkpoints/lenet.pt)"
    )
    # queued or --temp: the stage runs in a copy, DVC_ROOT still names the project
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "project"))
    assert cli.resume_advice("train@lenet", checkpoint) == (
        "this experiment ran in a temporary copy, and its checkpoint went with it: the same "
        "`dvc exp run` command starts it over"
    )


def test_a_failure_names_how_to_restore_the_outputs_dvc_deleted(capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> None:
        cli.stage_outputs("summary", Path("metrics/summary.json"))
        raise cli.PipelineError("bad (fix: this)")

    with pytest.raises(SystemExit):
        cli.run(fails)
    err = capsys.readouterr().err
    cli.stage_outputs("")
    assert err == (
        "error: bad (fix: this); its last committed outputs come back with `dvc checkout summary` "
        "and `git checkout HEAD -- metrics/summary.json`\n"
    )
