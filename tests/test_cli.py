"""Process set-up shared by the stage scripts."""

from __future__ import annotations

import ctypes
import platform

import pytest

from mnist_pipeline import cli


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_every_allocator_setting() -> None:
    assert cli.keep_freed_memory() is True


def test_without_glibc_nothing_is_set_and_false_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert cli.keep_freed_memory() is False


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
    assert cli.keep_freed_memory() is True
    # glibc's numbers from malloc.h; sizes in bytes
    assert libc.calls == [(-3, 256 << 20), (-1, 256 << 20), (-2, 64 << 20)]


@pytest.mark.parametrize("option", [-3, -1, -2])
def test_any_rejected_setting_makes_it_false(monkeypatch: pytest.MonkeyPatch, option: int) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda name: RecordingLibc({option}))
    assert cli.keep_freed_memory() is False
