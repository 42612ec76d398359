"""make isacheck: each cap reaches a fresh process, runs repeat bit for bit,
and a lower ISA changes the weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_caps_apply_runs_repeat_and_a_lower_isa_changes_the_weights() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_tools.isacheck",
            "--models",
            "mlp",
            "--steps",
            "2",
            "--repeats",
            "2",
            "--settings",
            "native,pre-2013",
            "--params",
            str(ROOT / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| mlp |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    native, pre_2013 = [cell.split("`")[1] for cell in cells]
    assert "not repeatable" not in row
    assert pre_2013 != native
    assert "- ATen default + oneDNN AVX (pre-2013 CPU): " in result.stdout
    assert "ATen DEFAULT, oneDNN capped at AVX," in result.stdout  # the cap reached the child process


def test_an_unknown_setting_is_one_error_line_naming_the_valid_ones() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mnist_tools.isacheck", "--settings", "native,avx1024"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        "error: unknown setting avx1024; choose from native, avx512-bf16, avx2, portable, pre-2013"
    )
