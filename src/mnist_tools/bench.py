"""Benchmark: the tutorials' way of training (torchvision dataset + PIL transforms + DataLoader) against ours.

    python -m mnist_tools.bench [--quick | --levers] [--raw data/raw] [--min-run-time 3]

Every rate is measured with torch.utils.benchmark: two warm-up calls, then timed passes until
--min-run-time seconds are spent, in two rounds per table row (tutorials' way, ours, matmul, then the
reverse order) so that the machine's drifting speed falls on all alike; the table gives the median
images/s and the spread (half the interquartile range, as a share of the median). For each seed
model, the same images, model, optimiser and batch size are trained (a) the tutorials' way and (b)
through our tensor-resident path, both with the train stage's allocator setting
(runtime.keep_freed_memory). Each row also gives our rate as a share of the machine's fp32 matmul rate
(a 2048x2048 matmul timed in the row's rounds), from the FLOPs of one training step
(torch.utils.flop_counter: forward and backward of the stock modules, so both ways are charged the
same work). The full mode also times lenet to the tutorial's 99.16% test accuracy under the tutorial's
recipe the tutorial's way, and under our committed recipe our way (one run each: a time-to-accuracy
has no replicates).
--levers times our path alone for every model, one column per speed lever: memory format x
precision, torch.compile (with its compile seconds), twice the batch size. Needs `dvc repro download`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark
from torch.utils.data import DataLoader, Subset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

from mnist_pipeline.cli import run
from mnist_pipeline.data import load_raw
from mnist_pipeline.inference import Preprocessing, predict_logits
from mnist_pipeline.models import build_model
from mnist_pipeline.params import ModelParams, load_params, model_names, model_params, revise
from mnist_pipeline.runtime import setup_process
from mnist_pipeline.smallconv import use_stock_convs
from mnist_pipeline.training import build_optimizer, build_seeded, fit_epochs

# The tutorials' data pipelines: batch size, normalisation, RandomRotation degrees, DataLoader workers.
SEED_LOADERS = {
    "resnet18": {"batch_size": 128, "mean": 0.5, "std": 0.5, "rotate": 10, "workers": 2},
    "mlp": {"batch_size": 64, "mean": 0.5, "std": 0.5, "rotate": 0, "workers": 0},
    "lenet": {"batch_size": 200, "mean": 0.5, "std": 0.5, "rotate": 0, "workers": 0},
    "cnn6": {"batch_size": 64, "mean": 0.0, "std": 1.0, "rotate": 0, "workers": 0},
    "cnn2": {"batch_size": 32, "mean": 0.0, "std": 1.0, "rotate": 0, "workers": 0},
}
TUTORIAL_ACCURACY = 0.9916  # tutorial 002, SGD 0.1 momentum 0.9, 10 epochs


def seed_recipe(name: str) -> ModelParams:
    """An SGD recipe with the tutorial's batch size, normalisation and rotation (constant lr)."""
    cfg = SEED_LOADERS[name]
    return ModelParams(
        arch=name,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=cfg["batch_size"],
        epochs=1,
        rotate_deg=cfg["rotate"],
        norm_mean=cfg["mean"],
        norm_std=cfg["std"],
    )


def seed_loader(raw: Path, name: str, images: int, batch_size: int | None = None) -> DataLoader:
    """torchvision MNIST with the tutorial's PIL transforms, as its DataLoader.

    Worker processes, where the tutorial used them, persist between passes: a bench pass is a few
    batches, and restarting workers each time would charge the tutorials' way a cost a real epoch spreads.
    """
    cfg = SEED_LOADERS[name]
    steps = ([transforms.RandomRotation(cfg["rotate"])] if cfg["rotate"] else []) + [
        transforms.ToTensor(),
        transforms.Normalize((cfg["mean"],), (cfg["std"],)),
    ]
    dataset = datasets.MNIST(raw, train=True, download=False, transform=transforms.Compose(steps))
    return DataLoader(
        Subset(dataset, range(min(images, len(dataset)))),
        batch_size=batch_size or cfg["batch_size"],
        shuffle=True,
        num_workers=cfg["workers"],
        persistent_workers=cfg["workers"] > 0,
        generator=torch.Generator().manual_seed(0),
    )


def seed_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> int:
    """One pass the tutorials' way; returns the number of images trained on."""
    model.train()
    seen = 0
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        seen += len(y)
    return seen


@dataclasses.dataclass(frozen=True)
class Rate:
    """Images/s from a torch.utils.benchmark measurement."""

    median: float  # images/s at the median time
    spread: float  # half the interquartile range of the replicates' rates, as a share of the median
    warmup_s: float = 0.0  # seconds the first pass took beyond a steady one: torch.compile's compilation

    def __str__(self) -> str:
        return f"{self.median:,.0f} ±{100 * self.spread:.0f}%"


def measure_interleaved(
    works: dict[str, tuple[Callable[[], Any], int]],
    threads: int,
    min_run_time: float,
    replicates: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Rate]:
    """Rates of several works (each: one pass over its image count per call), timed in a palindrome of rounds.

    Each work gets two warm-up calls, then about `replicates` timed passes and at least
    min_run_time seconds of them, in two rounds: A B C, then C B A. The machine's speed drifts
    (CPU clock, neighbours on a shared host: a 2048x2048 matmul measured 70-140 GFLOP/s within ten
    minutes on one 2-core EPYC), so rates timed one after the other can differ by more than the
    ratio being measured. In a palindrome a steady drift moves every work's median alike.
    """
    steady, warmup = {}, {}
    for name, (work, _) in works.items():
        start = clock()
        work()  # oneDNN primitive creation, first-touch allocation, torch.compile
        first_call = clock() - start
        start = clock()
        work()
        steady[name] = clock() - start
        warmup[name] = first_call - steady[name]
    times: dict[str, list[float]] = {name: [] for name in works}
    for order in (list(works), list(reversed(works))):
        for name in order:
            work = works[name][0]
            timer = benchmark.Timer(stmt="work()", globals={"work": work}, num_threads=threads, timer=clock)
            # half the run per round; blocked_autorange first runs one untimed pass (its block-size
            # estimate), which also re-warms the caches after the other works
            times[name] += timer.blocked_autorange(
                min_run_time=max(min_run_time, replicates * steady[name]) / 2
            ).times
    rates = {}
    for name, (_, images) in works.items():
        q1, _, q3 = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else (times[name][0],) * 3
        rate = images / statistics.median(times[name])
        rates[name] = Rate(median=rate, spread=(images / q1 - images / q3) / 2 / rate, warmup_s=warmup[name])
    return rates


def measure(
    work: Callable[[], Any], images: int, threads: int, min_run_time: float, replicates: int = 5
) -> Rate:
    """Rate of one work (one pass over `images` images per call), as measure_interleaved times it."""
    return measure_interleaved({"work": (work, images)}, threads, min_run_time, replicates)["work"]


def our_work(
    images: torch.Tensor, labels: torch.Tensor, recipe: ModelParams, compile: bool = False
) -> Callable[[], Any]:
    """One epoch of the train stage's loop (fit_epochs) over (N, 28, 28) uint8 images per call, one model.

    The run is planned for many more epochs than a bench makes (its schedule must not end) and scores
    an empty val split (NaN, no time), so each call times the training pass alone.
    """
    model = build_seeded(recipe, seed=0)
    trained = torch.compile(model) if compile else model
    long_run = revise(recipe, f"models.{recipe.arch}", epochs=100_000, patience=0)
    epochs = fit_epochs(
        trained, long_run, (images, labels), (images[:0], labels[:0]), seed=0, eval_batch_size=1000
    )
    return lambda: next(epochs)


def stock_model(arch: str) -> nn.Module:
    """The registry's model with every convolution back on PyTorch's own kernels, as the seeds ran it."""
    return use_stock_convs(build_model(arch))


def seed_work(raw: Path, name: str, images: int) -> Callable[[], Any]:
    """One pass the tutorials' way over the first `images` training images per call, on a model built once."""
    recipe = seed_recipe(name)
    torch.manual_seed(0)
    model = stock_model(name)
    optimizer = build_optimizer(model, recipe)
    loader = seed_loader(raw, name, images)
    return lambda: seed_epoch(model, optimizer, loader)


def throughput(
    raw: Path, name: str, images: int, committed: ModelParams, threads: int = 2, min_run_time: float = 3.0
) -> dict[str, Rate]:
    """Images/s the tutorials' way ("seed") and our way ("ours"), same model, optimiser, batch size and
    images, and matmuls/s of the machine's reference matmul ("matmul"), all timed in the same rounds.

    Our way takes the memory format and bf16 autocast of the committed recipe (params.yaml).
    """
    train_images, train_labels = load_raw(raw, train=True)
    ours = revise(
        seed_recipe(name), f"models.{name}", channels_last=committed.channels_last, bf16=committed.bf16
    )
    return measure_interleaved(
        {
            "seed": (seed_work(raw, name, images), images),
            "ours": (our_work(train_images[:images], train_labels[:images], ours), images),
            "matmul": (matmul_work(), 1),
        },
        threads,
        min_run_time,
    )


def train_flops_per_image(arch: str, batch_size: int) -> float:
    """FLOPs of one training step (forward, loss, backward) per image, counted on the stock modules."""
    model = stock_model(arch)
    x, y = torch.zeros(batch_size, 1, 28, 28), torch.zeros(batch_size, dtype=torch.int64)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch_size


MATMUL_N = 2048  # the reference matmul: (2048, 2048) @ (2048, 2048) float32, 2 * 2048**3 FLOPs


def matmul_work(n: int = MATMUL_N) -> Callable[[], Any]:
    """One n x n float32 matmul per call: the machine's dense compute limit, 2 n^3 FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: a @ b


FORMATS = ((False, False), (True, False), (False, True), (True, True))  # (channels_last, bf16)


def lever_rates(
    raw: Path, recipe: ModelParams, batches: int, threads: int, min_run_time: float
) -> dict[str, Rate]:
    """Images/s of our path for one committed recipe under each lever, keyed by the lever's column name."""
    train_images, train_labels = load_raw(raw, train=True)

    def rate(lever: ModelParams, compile: bool = False) -> Rate:
        images = batches * lever.batch_size
        work = our_work(train_images[:images], train_labels[:images], lever, compile)
        return measure(work, images, threads, min_run_time)

    rates = {
        f"{'NHWC' if channels_last else 'NCHW'} {'bf16' if bf16 else 'fp32'}": rate(
            revise(recipe, f"models.{recipe.arch}", channels_last=channels_last, bf16=bf16)
        )
        for channels_last, bf16 in FORMATS
    }
    rates["torch.compile"] = rate(recipe, compile=True)
    rates["2x batch"] = rate(revise(recipe, f"models.{recipe.arch}", batch_size=2 * recipe.batch_size))
    return rates


def accuracy_on(
    model: torch.nn.Module, test: tuple[torch.Tensor, torch.Tensor], preprocessing: Preprocessing
) -> float:
    """Accuracy on (images, labels) held in memory."""
    images, labels = test
    return (predict_logits(model, images, 1000, preprocessing).argmax(1) == labels).float().mean().item()


def time_to_accuracy_seed_way(raw: Path, epochs: int) -> tuple[float | None, float]:
    """Seconds of training and test scoring until lenet reaches TUTORIAL_ACCURACY the tutorial's way."""
    torch.manual_seed(0)
    model = build_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = seed_loader(raw, "lenet", 60_000)
    test = load_raw(raw, train=False)  # read once, not every epoch
    elapsed, accuracy = 0.0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        seed_epoch(model, optimizer, loader)
        accuracy = accuracy_on(model, test, Preprocessing(mean=0.5, std=0.5, channels_last=False))
        elapsed += time.perf_counter() - start
        if accuracy >= TUTORIAL_ACCURACY:
            return elapsed, accuracy
    return None, accuracy


def time_to_accuracy_our_way(raw: Path, recipe: ModelParams) -> tuple[float | None, float]:
    """Seconds of training and test scoring until lenet reaches TUTORIAL_ACCURACY with our recipe and loop.

    fit_epochs scores its val split after every epoch: here that split is the test set.
    """
    images, labels = load_raw(raw, train=True)
    test = load_raw(raw, train=False)
    model = build_seeded(recipe, seed=0)
    elapsed, accuracy = 0.0, 0.0
    for epoch in fit_epochs(
        model, revise(recipe, "models.lenet", patience=0), (images, labels), test, 0, 1000
    ):
        elapsed, accuracy = elapsed + epoch.row["seconds"], epoch.row["val_acc"]
        if accuracy >= TUTORIAL_ACCURACY:
            return elapsed, accuracy
    return None, accuracy


PASS_IMAGES = {
    "resnet18": 1_280,
    "mlp": 6_400,
    "lenet": 6_000,
    "cnn6": 6_400,
    "cnn2": 6_400,
}  # per timed pass
LEVER_BATCHES = {"resnet18": 2, "bnnet": 8}  # batches per timed pass; 16 for the others


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="download stage output")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the pipeline's train.threads)")
    parser.add_argument(
        "--min-run-time",
        type=float,
        default=None,
        help="seconds of timed passes per rate, after warm-up (default 10; 2 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter measurements, no time-to-accuracy")
    parser.add_argument(
        "--levers",
        action="store_true",
        help="only our path, every model: format x precision, torch.compile, 2x batch",
    )
    args = parser.parse_args()
    if args.min_run_time is None:
        args.min_run_time = 2.0 if args.quick else 10.0
    return args


def print_levers(args: argparse.Namespace, params: dict, header: str) -> None:
    """--levers: our path per model under each speed lever."""
    print(f"{header}; our path, committed recipes\n")
    columns = [f"{'NHWC' if cl else 'NCHW'} {'bf16' if bf16 else 'fp32'}" for cl, bf16 in FORMATS]
    columns += ["torch.compile", "2x batch"]
    print(f"| model | batch | {' | '.join(columns)} | compile s | params.yaml |")
    print("|---|---:|" + "---:|" * len(columns) + "---:|---|")
    for name in model_names(params):
        recipe = model_params(params, name)
        rates = lever_rates(
            args.raw, recipe, LEVER_BATCHES.get(recipe.arch, 16), args.threads, args.min_run_time
        )
        picked = f"{'NHWC' if recipe.channels_last else 'NCHW'} {'bf16' if recipe.bf16 else 'fp32'}"
        print(
            f"| {name} | {recipe.batch_size} | {' | '.join(str(rates[c]) for c in columns)} | "
            f"{rates['torch.compile'].warmup_s:.0f} | {picked} |",
            flush=True,
        )


def print_rates(args: argparse.Namespace, params: dict, header: str) -> None:
    """Images/s the tutorials' way and ours, per tutorial model, with the matmul rate of the same rounds."""
    print(
        f"{header}; same model, optimiser, batch size and images both ways; each row's rates and its "
        f"{MATMUL_N}x{MATMUL_N} fp32 matmul timed in the same rounds\n"
    )
    print(
        "| model | batch | images per pass | MFLOP per image | tutorials' way (DataLoader + PIL) "
        "| ours (tensors) | ratio | fp32 matmul GFLOP/s | ours, % of fp32 matmul |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, images in PASS_IMAGES.items():
        committed = model_params(params, name)
        flops = train_flops_per_image(committed.arch, SEED_LOADERS[name]["batch_size"])
        rates = throughput(args.raw, name, images, committed, args.threads, args.min_run_time)
        matmul = rates["matmul"].median * 2 * MATMUL_N**3  # FLOP/s
        print(
            f"| {name} | {SEED_LOADERS[name]['batch_size']} | {images:,} | {flops / 1e6:.1f} | "
            f"{rates['seed']} | {rates['ours']} | {rates['ours'].median / rates['seed'].median:.2f}x | "
            f"{matmul / 1e9:.1f} | "
            f"{100 * rates['ours'].median * flops / matmul:.0f}% |",
            flush=True,
        )


def print_time_to_accuracy(args: argparse.Namespace, params: dict) -> None:
    """lenet's training seconds to the tutorial's accuracy, the tutorial's recipe and way against ours."""
    print(
        f"\nlenet, training seconds until test accuracy >= {TUTORIAL_ACCURACY:.2%} "
        "(checked after each epoch; one run):"
    )
    seconds, accuracy = time_to_accuracy_seed_way(args.raw, epochs=10)
    print(
        "- seed recipe (SGD 0.1, constant), the tutorials' way: "
        + (f"{seconds:.0f} s" if seconds else f"not reached in 10 epochs (last: {accuracy:.2%})"),
        flush=True,
    )
    recipe = model_params(params, "lenet")
    seconds, accuracy = time_to_accuracy_our_way(args.raw, recipe)
    print(
        "- our recipe (params.yaml), our way: "
        + (
            f"{seconds:.0f} s ({accuracy:.2%})"
            if seconds
            else f"not reached in {recipe.epochs} epochs (last: {accuracy:.2%})"
        )
    )


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    # the committed numerics and the train stage's allocator, for both ways, before any kernel runs
    numerics = setup_process(params, threads=args.threads).numerics
    header = (
        f"torch {torch.__version__}, {args.threads} threads, numerics {numerics}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; median images/s while training "
        f"±half the IQR, torch.utils.benchmark, {args.min_run_time:g} s per rate"
    )
    if args.levers:
        print_levers(args, params, header)
        return
    print_rates(args, params, header)
    if not args.quick:
        print_time_to_accuracy(args, params)


if __name__ == "__main__":
    run(main)
