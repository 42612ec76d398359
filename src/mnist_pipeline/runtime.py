"""The process set-up every entry point shares: numerics, threads, allocator, deterministic kernels, device.

    runtime = setup_process(config, deterministic=True)  # first: before torch computes anything

Float results depend on each of these (environment.py says how), so every stage and tool that
computes with torch starts here, in this order.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import torch

from mnist_pipeline.environment import pin_numerics
from mnist_pipeline.inference import select_device
from mnist_pipeline.params import train_params


@dataclass(frozen=True)
class Runtime:
    """What setup_process pinned: the numerics mode, torch's thread count and the device."""

    numerics: str  # portable | native
    threads: int
    device: torch.device


def setup_process(config: dict[str, Any], deterministic: bool = False, threads: int | None = None) -> Runtime:
    """Pin params.yaml's numerics mode and thread count, keep freed memory, pick the device.

    deterministic: also deterministic kernels, as training sets them (use_deterministic_kernels).
    threads: another thread count than train.threads (bench's --threads).
    """
    numerics = pin_numerics(config)  # before torch computes anything
    settings = train_params(config)
    threads = settings.threads if threads is None else threads
    pin_threads(threads)
    keep_freed_memory()
    if deterministic:
        use_deterministic_kernels()
    return Runtime(numerics, threads, select_device(settings.device))


def pin_threads(threads: int) -> None:
    """Fix torch's thread count: float reductions, hence results, depend on it."""
    torch.set_num_threads(threads)


def use_deterministic_kernels() -> None:
    """Deterministic algorithms, as every training run sets them, without the NaN fill of new tensors.

    The fill (on by default with deterministic algorithms) only exposes reads of uninitialised memory,
    which would also break the byte-identical reruns the tests check; it wrote every new tensor once
    more and took 3% of a resnet18 and 12% of a bnnet training step (profiler, 2-core EPYC Zen 4).
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


# glibc mallopt() option numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Have glibc malloc reuse freed tensor memory instead of returning it to the OS; False if not glibc.

    By default each training step's large activations and gradients (MiBs each) are handed back
    to the OS when freed and page-faulted in again on the next step. Measured at batch 128 on
    2 threads: bnnet 24.5 -> 21.4 ms per step, resnet18 -2% to -9%. All three settings are
    needed: setting any one of them freezes glibc's adaptive mmap threshold, and trim alone made
    steps slower. Where memory goes does not change a result: outputs are bit-identical.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # macOS, Windows, musl
        return False
    settings = (
        (_M_MMAP_THRESHOLD, 256 << 20),
        (_M_TRIM_THRESHOLD, 256 << 20),
        (_M_TOP_PAD, 64 << 20),
    )  # bytes
    return all(mallopt(option, value) == 1 for option, value in settings)
