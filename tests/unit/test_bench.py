"""The benchmark's two training paths run on the same images (tiny generated IDX files)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from mnist_pipeline import training
from mnist_pipeline.data import load_raw
from mnist_pipeline.models import build_model
from mnist_pipeline.params import load_params, model_params
from mnist_pipeline.smallconv import SmallMapConv2d
from mnist_tools import bench
from mnist_tools.bench import seed_loader, throughput

PARAMS = Path(__file__).parents[2] / "params.yaml"


def as_bytes(images: torch.Tensor) -> list[bytes]:
    """Sorted raw bytes of (N, 28, 28) uint8 images: compares two sets of images regardless of order."""
    return sorted(image.numpy().tobytes() for image in images)


def unnormalise(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(B, 1, 28, 28) normalised floats back to (B, 28, 28) uint8 pixels."""
    return (x.squeeze(1) * std + mean).mul(255).round().to(torch.uint8)


@pytest.mark.parametrize("name", ["lenet", "cnn2"])
def test_seed_loader_yields_the_first_images_with_the_seed_normalisation(tiny_raw: Path, name: str) -> None:
    cfg = bench.SEED_LOADERS[name]
    batches = list(seed_loader(tiny_raw, name, images=100))
    assert [len(y) for _, y in batches] == [cfg["batch_size"]] * (100 // cfg["batch_size"]) + (
        [100 % cfg["batch_size"]] if 100 % cfg["batch_size"] else []
    )
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    images, labels = load_raw(tiny_raw, train=True)
    assert as_bytes(unnormalise(x, cfg["mean"], cfg["std"])) == as_bytes(images[:100])
    assert sorted(y.tolist()) == sorted(labels[:100].tolist())


def test_seed_loader_rotates_when_the_seed_did(tiny_raw: Path) -> None:
    cfg = bench.SEED_LOADERS["resnet18"]
    assert cfg["rotate"] == 10 and cfg["workers"] == 2  # tutorial 000: RandomRotation(10), two loader workers
    x = torch.cat([batch for batch, _ in seed_loader(tiny_raw, "resnet18", images=40)])
    rotated = set(as_bytes(unnormalise(x, cfg["mean"], cfg["std"])))
    plain = set(as_bytes(load_raw(tiny_raw, train=True)[0][:40]))
    # an angle under ~1.5 degrees moves no pixel of a 28x28 image (nearest neighbour): most must differ
    assert len(rotated - plain) >= 20


def test_both_paths_train_on_the_same_images(tiny_raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list] = {"seed": [], "ours": [], "recipe": []}

    def seed_epoch(model, optimizer, loader) -> int:
        x = torch.cat([batch for batch, _ in loader])
        seen["seed"].append(as_bytes(unnormalise(x, 0.0, 1.0)))
        return len(x)

    def train_one_epoch(
        model, optimizer, scheduler, images, labels, recipe, generator, *rest
    ) -> tuple[float, float]:
        seen["ours"].append(as_bytes(images))
        seen["recipe"].append(recipe)
        return 0.0, 0.0

    monkeypatch.setattr(bench, "seed_epoch", seed_epoch)
    monkeypatch.setattr(
        training, "train_one_epoch", train_one_epoch
    )  # what fit_epochs, the stage's loop, calls
    committed = model_params(load_params(PARAMS), "cnn2")
    throughput(tiny_raw, "cnn2", images=64, committed=committed, threads=1, min_run_time=0.01)
    # every timed pass, both ways, saw the same 64 images
    assert len(seen["seed"]) >= 5 and len(seen["ours"]) >= 5
    assert (
        all(images == seen["seed"][0] for images in seen["seed"] + seen["ours"])
        and len(seen["seed"][0]) == 64
    )
    # ours differs from the tutorial's recipe only in the committed memory format and autocast (and a run
    # planned long enough that its schedule never ends, without early stopping)
    assert set(seen["recipe"]) == {
        dataclasses.replace(
            bench.seed_recipe("cnn2"),
            channels_last=committed.channels_last,
            bf16=committed.bf16,
            epochs=100_000,
            patience=0,
        )
    }


def test_both_paths_train_and_report_a_rate(tiny_raw: Path) -> None:
    committed = dataclasses.replace(model_params(load_params(PARAMS), "cnn2"), channels_last=True, bf16=True)
    rates = throughput(tiny_raw, "cnn2", images=64, committed=committed, threads=1, min_run_time=0.01)
    assert set(rates) == {"seed", "ours", "matmul"}
    assert all(rate.median > 0 and rate.spread >= 0 for rate in rates.values())


def test_measure_gives_the_median_rate_its_spread_and_the_first_calls_extra_seconds() -> None:
    # a slow first pass (compilation), a steady one, then passes alternating 0.10 / 0.15 s (long enough that
    # torch.utils.benchmark times them one by one, as it does real training passes)
    durations = iter([0.5, 0.15, *([0.10, 0.15] * 50)])

    def work() -> None:
        time.sleep(next(durations))

    rate = bench.measure(work, images=100, threads=1, min_run_time=0.0, replicates=5)
    assert 100 / 0.17 <= rate.median <= 100 / 0.10  # sleep() overshoots by a few ms on a busy machine
    assert 0.1 < rate.spread < 0.4  # quartiles near 667 and 1,000 images/s
    assert 0.3 < rate.warmup_s < 0.45  # 0.5 s first pass minus a 0.15 s steady one


def test_measure_times_at_least_the_replicates_asked_for() -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        time.sleep(0.02)

    bench.measure(work, images=10, threads=1, min_run_time=0.0, replicates=7)
    assert len(calls) >= 2 + 7  # two warm-up passes, then the replicates


def test_lever_rates_time_every_lever(tiny_raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[tuple[bool, bool, int, bool, int]] = []

    def our_work(images: torch.Tensor, labels: torch.Tensor, recipe, compile: bool = False):
        timed.append((recipe.channels_last, recipe.bf16, recipe.batch_size, compile, len(images)))
        return lambda: None

    monkeypatch.setattr(bench, "our_work", our_work)
    recipe = dataclasses.replace(model_params(load_params(PARAMS), "lenet"), channels_last=True, bf16=True)
    rates = bench.lever_rates(
        tiny_raw, dataclasses.replace(recipe, batch_size=8), batches=2, threads=1, min_run_time=0.0
    )
    assert list(rates) == ["NCHW fp32", "NHWC fp32", "NCHW bf16", "NHWC bf16", "torch.compile", "2x batch"]
    assert timed == [
        (False, False, 8, False, 16),
        (True, False, 8, False, 16),
        (False, True, 8, False, 16),
        (True, True, 8, False, 16),
        (True, True, 8, True, 16),
        (True, True, 16, False, 32),
    ]
    assert all(rate.median > 0 for rate in rates.values())


def test_the_compile_lever_trains_the_compiled_module(
    tiny_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[torch.nn.Module] = []
    trained: list[torch.nn.Module] = []

    def fake_compile(model: torch.nn.Module) -> torch.nn.Module:
        wrapper = torch.nn.Sequential(model)  # stands in for the OptimizedModule torch.compile returns
        compiled.append(model)
        return wrapper

    def train_one_epoch(model, *rest) -> tuple[float, float]:
        trained.append(model)
        return 0.0, 0.0

    monkeypatch.setattr(bench.torch, "compile", fake_compile)
    monkeypatch.setattr(training, "train_one_epoch", train_one_epoch)
    recipe = model_params(load_params(PARAMS), "lenet")
    images, labels = bench.load_raw(tiny_raw, train=True)
    bench.our_work(images[:32], labels[:32], recipe, compile=True)()
    assert len(compiled) == 1 and isinstance(trained[0], torch.nn.Sequential) and trained[0][0] is compiled[0]
    bench.our_work(images[:32], labels[:32], recipe)()
    assert len(compiled) == 1 and not isinstance(trained[1], torch.nn.Sequential)  # eager: the model itself


def counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Wrap module.<name> so that each call appends to the returned list."""
    calls: list[int] = []
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


@pytest.mark.parametrize("way", ["seed", "ours"])
def test_time_to_accuracy_stops_at_the_first_epoch_that_reaches_it(
    tiny_raw: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    recipe = dataclasses.replace(
        model_params(load_params(PARAMS), "lenet"), epochs=3, batch_size=16, bf16=False
    )
    epochs = (
        counting(monkeypatch, bench, "seed_epoch")
        if way == "seed"
        else counting(monkeypatch, training, "train_one_epoch")
    )

    def run() -> tuple[float | None, float]:
        return (
            bench.time_to_accuracy_seed_way(tiny_raw, epochs=3)
            if way == "seed"
            else bench.time_to_accuracy_our_way(tiny_raw, recipe)
        )

    monkeypatch.setattr(bench, "TUTORIAL_ACCURACY", 0.0)
    seconds, accuracy = run()
    assert len(epochs) == 1 and seconds is not None and seconds > 0 and 0 <= accuracy <= 1

    epochs.clear()
    monkeypatch.setattr(bench, "TUTORIAL_ACCURACY", 1.01)  # out of reach: every epoch runs, no time back
    seconds, accuracy = run()
    assert len(epochs) == 3 and seconds is None and 0 <= accuracy <= 1


def test_the_seeds_way_trains_resnet18_on_pytorchs_own_convolutions(
    tiny_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[torch.nn.Module] = []
    monkeypatch.setattr(bench, "seed_epoch", lambda model, optimizer, loader: trained.append(model) or 0)
    bench.seed_work(tiny_raw, "resnet18", images=8)()
    kinds = {type(m) for m in trained[0].modules()}
    assert torch.nn.Conv2d in kinds and SmallMapConv2d not in kinds
    torch.manual_seed(0)
    ours = build_model("resnet18")  # our path keeps the dense GEMMs on tiny maps
    assert SmallMapConv2d in {type(m) for m in ours.modules()}
    for key, value in ours.state_dict().items():
        assert torch.equal(value, trained[0].state_dict()[key])  # same weights: only the kernels differ


def test_train_flops_per_image_counts_forward_and_backward() -> None:
    # mlp: forward 2*(784*300 + 300*100 + 100*10) multiply-adds as FLOPs; backward the same for the weight
    # gradients plus the input gradients of the two later layers (the images need none)
    forward = 2 * (784 * 300 + 300 * 100 + 100 * 10)
    assert bench.train_flops_per_image("mlp", batch_size=4) == 2 * forward + 2 * (300 * 100 + 100 * 10)
    # resnet18 counts the same work whatever kernels our path uses
    assert bench.train_flops_per_image("resnet18", 4) == pytest.approx(
        bench.train_flops_per_image("resnet18", 8)
    )


def test_matmul_work_multiplies_two_n_by_n_float32_matrices(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = []
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: shapes.append((a.shape, b.shape, a.dtype)))
    bench.matmul_work(64)()
    assert shapes == [((64, 64), (64, 64), torch.float32)]


class DriftingMachine:
    """A fake clock for works whose passes take `seconds` times a slowdown that grows with the time spent."""

    def __init__(self, drift_per_second: float) -> None:
        self.now, self.drift, self.calls = 0.0, drift_per_second, []

    def clock(self) -> float:
        return self.now

    def work(self, name: str, seconds: float):
        def run() -> None:
            self.calls.append(name)
            self.now += seconds * (1 + self.drift * self.now)

        return run


def test_measure_interleaved_times_the_works_in_a_palindrome_of_rounds() -> None:
    machine = DriftingMachine(0.0)
    works = {name: (machine.work(name, 0.125), 10) for name in "ABC"}  # binary fractions: exact sums
    bench.measure_interleaved(works, threads=1, min_run_time=0.0, replicates=4, clock=machine.clock)
    runs = [name for i, name in enumerate(machine.calls) if i == 0 or machine.calls[i - 1] != name]
    assert runs == [
        "A",
        "B",
        "C",
        "A",
        "B",
        "C",
        "B",
        "A",
    ]  # warm-ups; round 1; round 2 reversed (C, C joined)
    assert [machine.calls.count(name) for name in "ABC"] == [
        2 + 2 * 3
    ] * 3  # per round: block estimate + 2 timed


def test_a_steady_drift_moves_both_rates_alike() -> None:
    # two identical works on a machine that slows down by 10% per 10 s: timed one after the other they
    # would differ by about a tenth; in a palindrome their medians agree
    machine = DriftingMachine(0.01)
    works = {name: (machine.work(name, 0.5), 100) for name in ("seed", "ours")}
    rates = bench.measure_interleaved(works, threads=1, min_run_time=5.0, clock=machine.clock)
    assert rates["ours"].median == pytest.approx(rates["seed"].median, rel=0.01)
