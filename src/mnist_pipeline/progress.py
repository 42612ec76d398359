"""Progress inside an epoch or an evaluation pass: a tqdm bar on a terminal, a plain line per 10% in a log.

    with progress("lenet epoch 2", total=55_000) as advance:
        for batch in batches:
            ...
            advance(len(batch))

A bar redraws itself with carriage returns, which a CI log or `dvc queue logs` shows as one long line
or as thousands: there, every tenth of the pass prints one line with tqdm's own rate and time left.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TextIO

from tqdm import tqdm

Advance = Callable[[int], None]  # called with the images just done

# tqdm's fields: images done, their share, rate and time left
LINE_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} images [{elapsed}<{remaining}, {rate_fmt}]"
LINES_PER_PASS = 10


class Progress(Protocol):
    """What fit_epochs and the inference passes report to: progress(desc, total) as a context manager."""

    def __call__(self, desc: str, total: int) -> contextlib.AbstractContextManager[Advance]: ...


@contextlib.contextmanager
def no_progress(desc: str, total: int) -> Iterator[Advance]:
    """Report nothing: the default of the core functions, for tests and tools."""
    yield lambda n: None


@contextlib.contextmanager
def _bar(desc: str, total: int, stream: TextIO) -> Iterator[Advance]:
    with tqdm(total=total, desc=desc, unit="img", unit_scale=True, file=stream, leave=False) as bar:
        yield bar.update


@contextlib.contextmanager
def _lines(desc: str, total: int, stream: TextIO, clock: Callable[[], float]) -> Iterator[Advance]:
    start, done, printed = clock(), 0, 0

    def advance(n: int) -> None:
        nonlocal done, printed
        done += n
        tenth = done * LINES_PER_PASS // total if total else LINES_PER_PASS
        if tenth > printed:  # one line per tenth crossed, however large the step
            printed = tenth
            line = tqdm.format_meter(
                done, total, clock() - start, prefix=desc, unit="img", unit_scale=True, bar_format=LINE_FORMAT
            )
            print(line, file=stream, flush=True)

    yield advance


def progress_to(
    prefix: str = "", stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter
) -> Progress:
    """A Progress for stream (default: stdout): a tqdm bar when it is a terminal, plain lines when not.

    prefix (a model's name) goes before each pass's description.
    """

    def progress(desc: str, total: int) -> contextlib.AbstractContextManager[Advance]:
        out = stream if stream is not None else sys.stdout
        desc = f"{prefix} {desc}" if prefix else desc
        if out.isatty():
            return _bar(desc, total, out)
        return _lines(desc, total, out, clock)

    return progress
