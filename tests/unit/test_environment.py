"""The machine record: /proc/cpuinfo read once, the first processor's fields, flags and name."""

from __future__ import annotations

import pytest

from mnist_pipeline import environment
from mnist_pipeline.environment import cpu_flags, cpu_id, cpu_model, first_processor, runtime_environment

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
    env = runtime_environment("cpu", 2, bf16=False)
    assert reads == [None]
    assert (env["cpu_model"], env["cpu_id"], env["cpu_flags"]["avx2"]) == (
        "AMD EPYC",
        "family 25 model 1 stepping 1",
        True,
    )
    assert type(env["torch"]) is str  # torch.__version__ is a str subclass that weights_only loading refuses
