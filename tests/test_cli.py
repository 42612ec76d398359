"""Process set-up shared by the stage scripts."""

from __future__ import annotations

import ctypes
import platform

import pytest

from mnist_pipeline import cli


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_every_allocator_setting() -> None:
    assert cli.keep_freed_memory() is True


def test_without_glibc_it_changes_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert cli.keep_freed_memory() is False


def test_a_rejected_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class PickyLibc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 0 if option == cli._M_TOP_PAD else 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: PickyLibc())
    assert cli.keep_freed_memory() is False
    assert cli._M_MMAP_THRESHOLD in {option for option, _ in calls}
