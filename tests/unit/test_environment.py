"""The machine record (/proc/cpuinfo read once, the first processor's fields, flags and name) and the
numerics modes: what portable pins, what it refuses, and what the record and the PR check make of it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_pipeline import environment
from mnist_pipeline.environment import (
    PORTABLE_ENV,
    PORTABLE_KERNELS,
    apply_numerics,
    bit_class,
    cpu_flags,
    cpu_id,
    cpu_model,
    describe,
    first_processor,
    portable_cpu_problem,
    runtime_environment,
)
from mnist_pipeline.errors import PipelineError

CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
    "stepping\t: 1\nflags\t\t: fpu avx avx2 fma\n\n"
    "processor\t: 1\ncpu family\t: 99\nmodel name\t: Other\nflags\t\t: avx512f amx_bf16\n"
)


def test_first_processor_reads_only_the_first_block() -> None:
    fields = first_processor(CPUINFO)
    assert (
        fields["model name"] == "AMD EPYC"
        and fields["cpu family"] == "25"
        and fields["flags"] == "fpu avx avx2 fma"
    )
    assert first_processor("") == {}


def test_model_flags_and_id_come_from_those_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = first_processor(CPUINFO)
    assert cpu_model(fields) == "AMD EPYC"
    assert cpu_flags(fields) == {"avx2": True, "avx512f": False, "avx512_bf16": False, "amx_bf16": False}
    assert cpu_id(fields=fields) == "family 25 model 1 stepping 1" == cpu_id(CPUINFO)
    monkeypatch.setattr(environment.platform, "processor", lambda: "arm64")
    assert cpu_model({}) == "arm64"  # no /proc/cpuinfo (macOS)


def test_the_record_reads_cpuinfo_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = environment.first_processor

    def counted(cpuinfo: str | None = None) -> dict[str, str]:
        reads.append(cpuinfo)
        return real(CPUINFO)

    monkeypatch.setattr(environment, "first_processor", counted)
    env = runtime_environment("cpu", 2, bf16=False, numerics="native")
    assert reads == [None]
    assert (env["cpu_model"], env["cpu_id"], env["cpu_flags"]["avx2"]) == (
        "AMD EPYC",
        "family 25 model 1 stepping 1",
        True,
    )
    assert type(env["torch"]) is str  # torch.__version__ is a str subclass that weights_only loading refuses


def kernels_in_a_fresh_process(
    mode: str, before: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """apply_numerics(mode) in a new interpreter (the libraries read their settings once per process)."""
    code = (
        "import json, torch\n"
        f"{before}\n"
        "from mnist_pipeline.cli import run\n"
        "from mnist_pipeline.environment import apply_numerics\n"
        f"run(lambda: print(json.dumps(apply_numerics({mode!r}))))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV},  # conftest set them
    )


def test_portable_pins_aten_onednn_and_mkl_whatever_the_shell_set() -> None:
    shell = os.environ | {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX", "MKL_CBWR": "AUTO"}
    result = kernels_in_a_fresh_process("portable", env=shell)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"aten": "AVX2", "onednn": "Intel AVX2", "mkl": "COMPATIBLE"}'


def test_native_frees_the_kernels_the_shell_had_capped() -> None:
    shell = os.environ | PORTABLE_ENV
    native = kernels_in_a_fresh_process("native", env=shell)
    plain = kernels_in_a_fresh_process(
        "native", env={k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    )
    assert native.returncode == 0, native.stderr
    assert native.stdout == plain.stdout  # the CPU's own choice, not the shell's caps
    assert '"mkl": "BRANCH_OFF"' in native.stdout


def test_portable_after_torch_computed_is_one_error_line_not_a_silent_native_run() -> None:
    result = kernels_in_a_fresh_process(
        "portable",
        before="torch.nn.functional.conv2d(torch.zeros(2, 8, 8, 8), torch.zeros(8, 8, 3, 3))\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)",
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: numerics: portable needs ATen AVX2, oneDNN Intel AVX2 and MKL COMPATIBLE, "
        "but this process got aten "
    )
    assert "mkl BRANCH_OFF" in result.stderr  # MKL's first GEMM fixed its branch, on any CPU
    assert "(fix: " in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_cpu_without_avx2_or_not_x86_is_refused_naming_native(monkeypatch: pytest.MonkeyPatch) -> None:
    assert portable_cpu_problem("x86_64", {"AVX2": True, "FMA3": True}) is None
    assert portable_cpu_problem("arm64", {}) == "this machine is arm64, not x86-64"
    monkeypatch.setattr(environment, "first_processor", lambda: first_processor(CPUINFO))
    assert portable_cpu_problem("x86_64", {"AVX2": False, "FMA3": True}) == "this CPU (AMD EPYC) has no AVX2"
    assert portable_cpu_problem("AMD64", {"AVX2": True}) == "this CPU (AMD EPYC) has no FMA3"
    monkeypatch.setattr(environment.platform, "machine", lambda: "aarch64")
    with pytest.raises(PipelineError) as error:
        apply_numerics("portable")
    assert str(error.value) == (
        "numerics: portable runs the x86-64 AVX2 kernels, and this machine is aarch64, not x86-64 "
        "(fix: set numerics: native in params.yaml, or `dvc exp run -S numerics=native`)"
    )


def test_the_record_shows_the_mode_and_what_each_library_dispatched_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(environment, "dispatched_kernels", lambda: dict(PORTABLE_KERNELS))
    env = runtime_environment("cpu", 2, bf16=False, numerics="portable")
    assert (env["numerics"], env["aten_cpu_capability"], env["onednn_isa"], env["mkl_cbwr"]) == (
        "portable",
        "AVX2",
        "Intel AVX2",
        "COMPATIBLE",
    )
    assert "portable numerics, 2 threads" in describe(env)
    native = env | {"numerics": "native", "aten_cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512"}
    assert "native numerics: ATen AVX512, oneDNN Intel AVX-512, MKL COMPATIBLE" in describe(native)


def test_portable_bits_ignore_the_cpu_native_bits_and_gpus_do_not() -> None:
    zen4 = {
        "torch": "2.14.1",
        "device": "cpu",
        "threads": 2,
        "numerics": "portable",
        "cpu_id": "family 25 model 17",
        "cpu_model": "AMD EPYC",
        "aten_cpu_capability": "AVX2",
        "onednn_isa": "Intel AVX2",
        "mkl_cbwr": "COMPATIBLE",
        "python": "3.11",
    }
    xeon = zen4 | {"cpu_id": "family 6 model 143", "cpu_model": "Intel Xeon", "python": "3.12"}
    assert bit_class(zen4) == bit_class(xeon)
    assert bit_class(zen4) != bit_class(xeon | {"threads": 4})
    assert bit_class(zen4) != bit_class(xeon | {"torch": "2.15.0"})
    native = {**zen4, "numerics": "native"}
    assert bit_class(native) != bit_class({**xeon, "numerics": "native"})
    assert bit_class(native) == bit_class(native | {"cpu_model": "renamed", "python": "3.13"})
    h100 = {
        "torch": "2.14.1",
        "device": "cuda",
        "gpu": "NVIDIA H100",
        "fp32_precision": {"cudnn_conv": "ieee"},
    }
    assert bit_class(h100) != bit_class(h100 | {"gpu": "NVIDIA H200"})
