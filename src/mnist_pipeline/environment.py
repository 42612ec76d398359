"""The machine and kernel choices behind a result, and the numerics modes that pin them across x86 CPUs.

Float results depend on the instruction set the kernels use: ATen dispatches to the best of
DEFAULT/AVX2/AVX512 the CPU has, oneDNN (convolutions) to its best ISA up to AMX, and MKL (matrix
products, and VML functions such as large float32 square roots) to per-CPU code paths. The
`portable` numerics mode caps ATen and oneDNN at AVX2, which every x86-64 CPU since about 2015 has,
and puts MKL in its COMPATIBLE branch, the one code path it runs the same on Intel and AMD (an ISA
branch such as MKL_CBWR=AVX2 falls back to AUTO on AMD CPUs). ATen, oneDNN and MKL read these
variables when they first run a kernel, so apply_numerics must run before any tensor computation;
it then checks what each library really dispatched to. This module imports torch only inside
functions for that reason.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import numerics_param

# Read by ATen (CPU op dispatch), oneDNN (conv, pooling) and MKL (fp32 GEMM, VML) at their first kernel.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
# What a portable process must report: ATen's capability, oneDNN's ISA line, MKL's branch.
PORTABLE_KERNELS = {"aten": "AVX2", "onednn": "Intel AVX2", "mkl": "COMPATIBLE"}
ENV_DIR = "metrics/env"  # where stages record their environment, one JSON file per stage run
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that change which kernels run
NATIVE_FIX = "set numerics: native in params.yaml, or `dvc exp run -S numerics=native`"

# MKL's branch codes (mkl_service.h: MKL_CBWR_*), as mkl_cbwr_get(MKL_CBWR_BRANCH) returns them
_MKL_BRANCHES = {
    0: "OFF",
    1: "BRANCH_OFF",  # the default: MKL picks its fastest path for this CPU
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    12: "AVX512",
    14: "AVX512_E1",
}
_MKL_STRICT = 0x10000

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


def mkl_branch() -> str | None:
    """MKL's reproducibility branch in this process (e.g. 'COMPATIBLE', 'AUTO,STRICT'); None without MKL."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    try:  # MKL is linked into libtorch_cpu statically; its service functions are exported there
        get = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return "unknown"
    code = get(-1)  # MKL_CBWR_ALL: the branch in the low bits, STRICT as a flag
    branch = _MKL_BRANCHES.get(code & 0xFFFF, str(code & 0xFFFF))
    return branch + (",STRICT" if code & _MKL_STRICT else "")


def onednn_isa() -> str | None:
    """The ISA oneDNN's kernels use in this process (e.g. 'Intel AVX2'), from its verbose header."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    sys.stdout.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(1)  # oneDNN prints to the C stdout: point it at the file for one convolution
        os.dup2(capture.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                # batch 2 and a 3x3 kernel: a shape that torch sends to oneDNN, not to its own kernel
                torch.nn.functional.conv2d(torch.zeros(2, 8, 8, 8), torch.zeros(8, 8, 3, 3))
            ctypes.CDLL(None).fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    for line in text.splitlines():
        if ",cpu,isa:" in line:
            return line.split(",cpu,isa:", 1)[1].strip()
    return "unknown"


@functools.cache
def dispatched_kernels() -> dict[str, str | None]:
    """What ATen, oneDNN and MKL dispatch to in this process; fixed at their first kernel, so read once."""
    import torch

    return {"aten": torch.backends.cpu.get_cpu_capability(), "onednn": onednn_isa(), "mkl": mkl_branch()}


def cpu_features() -> dict[str, bool]:
    """The CPU's instruction-set extensions by its CPUID, as numpy detects them at run time (emulated too)."""
    from numpy._core._multiarray_umath import __cpu_features__  # numpy.show_runtime() reads the same

    return dict(__cpu_features__)


def portable_cpu_problem(machine: str, features: dict[str, bool]) -> str | None:
    """Why this CPU cannot run the portable kernels (not x86-64, or no AVX2 or FMA), else None.

    ATen takes ATEN_CPU_CAPABILITY=avx2 at its word, so on a CPU without AVX2 it would crash mid-run.
    """
    if machine.lower() not in ("x86_64", "amd64"):
        return f"this machine is {machine}, not x86-64"
    missing = [name for name in ("AVX2", "FMA3") if not features.get(name)]
    if missing:
        return f"this CPU ({cpu_model(first_processor())}) has no {' or '.join(missing)}"
    return None


def apply_numerics(mode: str) -> dict[str, str | None]:
    """Pin (portable) or free (native) this process's CPU kernels; return what they dispatch to.

    Call it before torch computes anything: ATen, oneDNN and MKL read their settings at their first
    kernel. A portable process that did not get the portable kernels stops with one error line.
    """
    if mode == "portable":
        problem = portable_cpu_problem(platform.machine(), cpu_features())
        if problem:
            raise PipelineError(
                f"numerics: portable runs the x86-64 AVX2 kernels, and {problem} (fix: {NATIVE_FIX})"
            )
        os.environ.update(PORTABLE_ENV)
    else:
        for key in PORTABLE_ENV:  # native: the CPU's own kernels, whatever the shell had set
            os.environ.pop(key, None)
    kernels = dispatched_kernels()
    if mode == "portable" and kernels != PORTABLE_KERNELS:
        got = ", ".join(f"{lib} {kernels[lib]}" for lib in PORTABLE_KERNELS)
        raise PipelineError(
            f"numerics: portable needs ATen AVX2, oneDNN Intel AVX2 and MKL COMPATIBLE, but this process "
            f"got {got}: torch computed before the caps were set (fix: call apply_numerics first; or "
            f"{NATIVE_FIX})"
        )
    return kernels


def pin_numerics(config: dict[str, Any]) -> str:
    """Apply params.yaml's numerics mode to this process and return it, before torch computes anything."""
    mode = numerics_param(config)
    apply_numerics(mode)
    return mode


def runtime_environment(device: Any, threads: int, bf16: bool, numerics: str) -> dict[str, Any]:
    """What produced a stage's numbers: versions, device, threads, CPU and the kernels it dispatched to."""
    import torch

    fields = first_processor()  # /proc/cpuinfo read once
    flags = cpu_flags(fields)
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    kernels = dispatched_kernels()
    env: dict[str, Any] = {
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "python": platform.python_version(),
        "device": str(device),
        "threads": threads,
        "numerics": numerics,  # params.yaml's mode: portable (AVX2 kernels, MKL COMPATIBLE) or native
        "cpu_model": cpu_model(fields),
        "cpu_id": cpu_id(fields=fields),
        "cpu_flags": flags,
        "aten_cpu_capability": kernels["aten"],  # the ISA ATen's kernels use
        "onednn_isa": kernels["onednn"],  # from oneDNN's own report
        "mkl_cbwr": kernels["mkl"],  # MKL's branch, read back from MKL
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
    "numerics",
    "aten_cpu_capability",
    "onednn_isa",
    "mkl_cbwr",
    "fp32_precision",
    "bf16_instructions",
)


def describe(env: dict[str, Any]) -> str:
    """A short description, e.g. 'AMD EPYC (family 25 ...), portable numerics, 2 threads, torch 2.14.1'."""
    where = env.get("gpu") or env.get("cpu_model", "?") + (f" ({env['cpu_id']})" if env.get("cpu_id") else "")
    parts = [where]
    if env.get("numerics") == "portable":
        parts.append("portable numerics")
    else:
        parts.append(
            f"{env.get('numerics', 'native')} numerics: ATen {env.get('aten_cpu_capability', '?')}, "
            f"oneDNN {env.get('onednn_isa', '?')}, MKL {env.get('mkl_cbwr', '?')}"
        )
    if env.get("bf16_instructions"):
        parts.append(f"bf16 via {env['bf16_instructions']}")
    parts += [f"{env.get('threads', '?')} threads", f"torch {env.get('torch', '?')}"]
    return ", ".join(parts)


# The record fields two results must share to be equal bit for bit, given the same code, params and data.
# Portable CPU runs: not the CPU, only the pinned kernels. Native runs: the CPU type too. GPUs: the model.
BIT_FIELDS = {
    "portable": ("torch", "device", "threads", "numerics", "aten_cpu_capability", "onednn_isa", "mkl_cbwr"),
    "native": (
        "torch",
        "device",
        "threads",
        "numerics",
        "cpu_id",
        "aten_cpu_capability",
        "onednn_isa",
        "mkl_cbwr",
        "bf16_instructions",
    ),
    "cuda": ("torch", "device", "gpu", "fp32_precision"),
}


def bit_class(env: dict[str, Any]) -> dict[str, Any]:
    """The fields of a machine record that decide its bits: equal classes, equal results."""
    if str(env.get("device", "")).startswith("cuda"):
        kind = "cuda"
    else:
        kind = "portable" if env.get("numerics") == "portable" else "native"
    return {key: env.get(key) for key in BIT_FIELDS[kind]}
