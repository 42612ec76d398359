"""make cpu-zoo: portable numerics give one weight digest per model on this CPU and on emulated ones,
a difference fails the run, and a missing or old qemu-user is one line that says how to get it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_tools import cpuzoo
from mnist_tools.cpuzoo import qemu_problem, zoo_table

ROOT = Path(__file__).resolve().parents[2]
# The subset `make test` runs: cnn6 for AdamW (whose default square root follows the CPU), mlp for MKL's GEMMs
# and BatchNorm, lenet for oneDNN's convolutions and the augmentation; this CPU and one emulated model of the
# other vendor, two steps each, of 16 images rather than each recipe's batch: the same kernels. At the
# recipes' batches the emulated convolutions took 267 s of `make test` on a 2-core AMD EPYC Zen 2 (586 s on
# an Intel Xeon host); with two emulated CPUs at 16 images the subset still took 116-149 s of `.ci/run`
# there, which left `.ci/run` at 14.3-15.0 minutes. `make cpu-zoo` runs the whole zoo.
SUBSET_MODELS = "cnn6,mlp,lenet"
SUBSET_BATCH = 16


def other_vendor_cpu(cpuinfo: str) -> str:
    """An emulated CPU of the vendor this machine is not: an AMD host checks an Intel model, and back."""
    return "Haswell-v4" if "AuthenticAMD" in cpuinfo else "EPYC-Milan"


def test_the_subset_emulates_the_other_vendor() -> None:
    assert other_vendor_cpu("vendor_id\t: AuthenticAMD\n") == "Haswell-v4"
    assert other_vendor_cpu("vendor_id\t: GenuineIntel\n") == "EPYC-Milan"


def cell(digest: str) -> dict:
    return {"digest": digest, "ms_per_step": 12.0}


def results(**digests: tuple[str, str]) -> dict:
    """CPU name → the zoo's result for two models, a and b."""
    return {
        cpu: {"environment": {}, "models": {"a": cell(a), "b": cell(b)}} for cpu, (a, b) in digests.items()
    }


def test_the_table_marks_a_model_whose_digests_differ() -> None:
    table, differing = zoo_table(
        ["a", "b"], ["native", "EPYC-Milan"], results(native=("1", "2"), **{"EPYC-Milan": ("1", "3")})
    )
    assert differing == ["b"]
    assert table.splitlines()[0] == "| model | native | EPYC-Milan | same |"
    assert table.splitlines()[2] == "| a | `1` 12 ms | `1` 12 ms | yes |"
    assert table.splitlines()[3] == "| b | `2` 12 ms | `3` 12 ms | **no** |"


@pytest.mark.parametrize(("numerics", "exit_code"), [("portable", 1), ("native", None)])
def test_a_difference_fails_portable_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, numerics: str, exit_code: int | None
) -> None:
    fake = results(native=("1", "2"), **{"Haswell-v4": ("1", "3")})
    environment = {"aten_cpu_capability": "AVX2", "onednn_isa": "Intel AVX2", "mkl_cbwr": "COMPATIBLE"}
    environment |= {"threads": 2, "torch": "2.14.1"}
    monkeypatch.setattr(cpuzoo, "run_cpu", lambda cpu, *_: fake[cpu] | {"environment": environment})
    monkeypatch.setattr(cpuzoo, "qemu_problem", lambda: None)
    monkeypatch.setattr(
        sys, "argv", ["cpuzoo", "--models", "a,b", "--cpus", "native,Haswell-v4", "--numerics", numerics]
    )
    params = {"models": {"a": {}, "b": {}}}
    monkeypatch.setattr(cpuzoo, "load_params", lambda path: params)
    if exit_code is None:
        cpuzoo.main()
    else:
        with pytest.raises(SystemExit) as exited:
            cpuzoo.main()
        assert exited.value.code == exit_code
    out, err = capsys.readouterr()
    assert "| b | `2` 12 ms | `3` 12 ms | **no** |" in out
    assert "- Haswell-v4: ATen AVX2, oneDNN Intel AVX2, MKL COMPATIBLE, 2 threads, torch 2.14.1" in out
    assert ("portable numerics differ between CPUs for: b" in err) == (numerics == "portable")


def fake_qemu(folder: Path, version_line: str) -> None:
    script = folder / "qemu-x86_64"
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_qemu_must_be_there_and_8_or_newer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert qemu_problem() == "qemu-x86_64 not found"
    fake_qemu(tmp_path, "qemu-x86_64 version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)")
    assert qemu_problem() == "qemu-x86_64 7.2.15 is older than 8"
    fake_qemu(tmp_path, "qemu-x86_64 version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)")
    assert qemu_problem() is None


def test_without_qemu_the_zoo_is_one_line_that_says_how_to_get_it(tmp_path: Path) -> None:
    env = os.environ | {"PATH": f"{tmp_path}"}
    result = subprocess.run(
        [sys.executable, "-m", "mnist_tools.cpuzoo", "--params", str(ROOT / "params.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: qemu-x86_64 not found (fix: install qemu-user 8 or newer (Debian 12: apt-get install -t "
        "bookworm-backports qemu-user; Ubuntu 24.04 and Debian 13: apt-get install qemu-user), or run "
        "`make install-test` as root)\n"
    )


def test_an_unknown_model_names_the_valid_ones() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_tools.cpuzoo",
            "--models",
            "lenet,vgg",
            "--params",
            str(ROOT / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: no model vgg in ")
    models = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
    assert f"(fix: choose from {', '.join(models)})" in result.stderr


def test_the_subset_gives_one_digest_per_model_on_intel_and_amd() -> None:
    problem = qemu_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {problem}: `make install-test` installs qemu-user as root")
        pytest.skip(f"{problem}: `make install-test` as root installs qemu-user")
    models = SUBSET_MODELS
    cpus = f"native,{other_vendor_cpu(Path('/proc/cpuinfo').read_text())}"
    result = subprocess.run(
        [sys.executable, "-m", "mnist_tools.cpuzoo", "--models", models, "--cpus", cpus, "--steps", "2"]
        + ["--batch-size", str(SUBSET_BATCH)]
        + ["--params", str(ROOT / "params.yaml")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "`" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| " + name for name in models.split(",")]
    assert all(row.endswith(" | yes |") for row in rows), result.stdout
    for cpu in cpus.split(","):
        assert f"- {cpu}: ATen AVX2, oneDNN Intel AVX2, MKL COMPATIBLE, 2 threads" in result.stdout
