"""The machine and kernel choices behind a result, and the portable mode that pins them across x86 CPUs.

Float results depend on the instruction set the kernels use: ATen dispatches to the best of
DEFAULT/AVX2/AVX512 the CPU has, oneDNN (convolutions) to its best ISA up to AMX, and MKL (matrix
products) to per-CPU code paths. Portable mode caps all three at AVX2, which every x86 CPU since
about 2015 has, so that two such machines run the same kernels. The caps must be in the environment
before torch runs its first kernel, so this module imports torch only inside runtime_environment.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# Read by ATen (CPU op dispatch), oneDNN (conv, pooling, bf16 matmul) and MKL (fp32 GEMM) when first used.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"}
ENV_DIR = "metrics/env"  # where stages record their environment, one JSON file per stage run
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that change which kernels run

# oneDNN's ISA caps, lowest first (ONEDNN_MAX_CPU_ISA); where bf16 hardware instructions begin.
_ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
)


def first_processor(cpuinfo: str | None = None) -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (or of the given text) as field → value; {} off Linux."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the other processors' blocks repeat it
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model(fields: dict[str, str]) -> str:
    """The CPU's marketing name from first_processor() fields, else what the platform module knows."""
    return fields.get("model name") or platform.processor() or platform.machine()


def cpu_id(cpuinfo: str | None = None, fields: dict[str, str] | None = None) -> str | None:
    """x86 family, model and stepping, e.g. 'family 25 model 1 stepping 1' (None on other architectures).

    Virtual machines often name every EPYC just "AMD EPYC"; these numbers tell a Zen 1 (family 23)
    from a Zen 3 (family 25, model 1) from a Zen 4 (family 25, model 17), which run different kernels.
    """
    fields = first_processor(cpuinfo) if fields is None else fields
    if "cpu family" not in fields or "model" not in fields:
        return None
    return f"family {fields['cpu family']} model {fields['model']} stepping {fields.get('stepping', '?')}"


def cpu_flags(fields: dict[str, str]) -> dict[str, bool]:
    """Which of the instruction-set extensions that steer kernel choice the CPU reports (Linux only)."""
    flags = set(fields.get("flags", "").split())
    return {flag: flag in flags for flag in CPU_FLAGS}


def bf16_instructions(flags: dict[str, bool], onednn_cap: str | None) -> str:
    """What oneDNN computes bf16 autocast with: amx, avx512_bf16, or none (converted to fp32 on the fly)."""
    rank = _ONEDNN_ISAS.index(onednn_cap) if onednn_cap in _ONEDNN_ISAS else len(_ONEDNN_ISAS)
    if flags.get("amx_bf16") and rank >= _ONEDNN_ISAS.index("AVX10_1_512_AMX"):
        return "amx"
    if flags.get("avx512_bf16") and rank >= _ONEDNN_ISAS.index("AVX512_CORE_BF16"):
        return "avx512_bf16"
    return "none"


def runtime_environment(device: Any, threads: int, bf16: bool) -> dict[str, Any]:
    """What produced a stage's numbers: versions, device, threads, CPU and the kernels it dispatched to."""
    import torch

    fields = first_processor()  # /proc/cpuinfo read once
    flags = cpu_flags(fields)
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    env: dict[str, Any] = {
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "python": platform.python_version(),
        "device": str(device),
        "threads": threads,
        "cpu_model": cpu_model(fields),
        "cpu_id": cpu_id(fields=fields),
        "cpu_flags": flags,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ISA ATen's kernels use
        "onednn_max_cpu_isa": onednn_cap or "default",
        "mkl_cbwr": os.environ.get("MKL_CBWR", "default"),
        "portable": all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items()),
        "fp32_precision": {  # "ieee", "tf32" or "bf16"; "none": the backend's default (IEEE on the CPU)
            "cudnn_conv": torch.backends.cudnn.conv.fp32_precision,
            "cuda_matmul": torch.backends.cuda.matmul.fp32_precision,
            "onednn": torch.backends.mkldnn.fp32_precision,
        },
        "bf16_autocast": bf16,
        "bf16_instructions": bf16_instructions(flags, onednn_cap) if bf16 and str(device) == "cpu" else None,
    }
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# The fields whose difference between two runs explains different numbers (versions, kernels, threads).
COMPARED = (
    "torch",
    "device",
    "gpu",
    "threads",
    "cpu_model",
    "cpu_id",
    "aten_cpu_capability",
    "onednn_max_cpu_isa",
    "mkl_cbwr",
    "fp32_precision",
    "bf16_instructions",
)


def describe(env: dict[str, Any]) -> str:
    """A short description, e.g. 'AMD EPYC, AVX2, bf16 without hardware support, 2 threads, torch 2.14.1'."""
    where = env.get("gpu") or env.get("cpu_model", "?") + (f" ({env['cpu_id']})" if env.get("cpu_id") else "")
    parts = [where, f"ATen {env.get('aten_cpu_capability', '?')}"]
    if env.get("onednn_max_cpu_isa", "default") != "default":
        parts.append(f"oneDNN capped at {env['onednn_max_cpu_isa']}")
    if env.get("bf16_instructions"):
        parts.append(f"bf16 via {env['bf16_instructions']}")
    if env.get("portable"):
        parts.append("portable mode")
    parts += [f"{env.get('threads', '?')} threads", f"torch {env.get('torch', '?')}"]
    return ", ".join(parts)
