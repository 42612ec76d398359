"""Progress inside an epoch: a tqdm bar on a terminal, a plain line per tenth in a log."""

from __future__ import annotations

import io

import torch

from mnist_pipeline.params import ModelParams
from mnist_pipeline.progress import progress_to
from mnist_pipeline.training import fit_epochs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def ticking(step: float = 1.0):
    """A clock that advances `step` seconds each time it is read."""
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


def test_a_log_gets_one_plain_line_per_tenth_without_carriage_returns() -> None:
    log = io.StringIO()  # not a terminal: a CI log or `dvc queue logs`
    with progress_to("lenet", log, clock=ticking())("epoch 1/4", total=1000) as advance:
        for _ in range(40):
            advance(25)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 10
    assert lines[0].startswith("lenet epoch 1/4:  10% 100/1.00k images [")
    assert lines[-1].startswith("lenet epoch 1/4: 100% 1.00k/1.00k images [")
    assert "img/s]" in lines[-1]  # tqdm's rate, and the time left before it


def test_a_large_step_prints_once_and_a_pass_of_nothing_prints_the_end() -> None:
    log = io.StringIO()
    progress = progress_to(stream=log, clock=ticking())
    with progress("val", total=100) as advance:
        advance(35)  # crosses three tenths at once
        advance(65)
    assert [line.split(":")[0] for line in log.getvalue().splitlines()] == ["val", "val"]
    with progress("empty", total=0) as advance:
        advance(0)
    assert log.getvalue().splitlines()[-1].startswith("empty: ")


def test_a_terminal_gets_a_tqdm_bar_with_rate_and_time_left() -> None:
    screen = Terminal()
    with progress_to("bnnet", screen)("epoch 2/8", total=500) as advance:
        for _ in range(5):
            advance(100)
    shown = screen.getvalue()
    assert "\r" in shown and "bnnet epoch 2/8" in shown  # redrawn in place
    assert "img/s" in shown or "s/img" in shown or "?img/s" in shown


def test_fit_epochs_reports_every_image_of_every_epoch() -> None:
    seen: list[tuple[str, int, int]] = []

    def progress(desc: str, total: int):
        import contextlib

        @contextlib.contextmanager
        def recording():
            done = [0]
            yield lambda n: done.__setitem__(0, done[0] + n)
            seen.append((desc, total, done[0]))

        return recording()

    recipe = ModelParams(arch="mlp", optimizer="sgd", lr=0.01, batch_size=8, epochs=2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    images = torch.randint(0, 256, (41, 28, 28), dtype=torch.uint8)  # the last batch of one is dropped
    labels = torch.arange(41) % 10
    list(fit_epochs(model, recipe, (images, labels), (images[:5], labels[:5]), 0, 16, progress=progress))
    assert seen == [("epoch 1/2", 40, 40), ("epoch 2/2", 40, 40)]
