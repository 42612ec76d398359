"""Benchmark: the seeds' way of training (torchvision dataset + PIL transforms + DataLoader) against ours.

    python -m mnist_pipeline.bench [--quick | --formats] [--raw data/raw]

For each seed model, the same number of training images, the same model, optimiser and batch size,
trained (a) the seeds' way and (b) through our tensor-resident path; prints images/s and the ratio.
The full mode also times lenet to the seed's 99.16% test accuracy under the seed's recipe the
seed's way, and under our committed recipe our way. --formats times our path alone for every model
in both memory formats, with and without bf16 autocast. Needs `dvc repro download` first.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from mnist_pipeline.data import load_raw
from mnist_pipeline.models import build_model
from mnist_pipeline.params import ModelParams, load_params, model_names, model_params
from mnist_pipeline.training import (
    augmented_epoch, batch_slices, build_optimizer, build_scheduler, predict_logits, train_one_epoch,
)

# The seeds' data pipelines: batch size, normalisation, RandomRotation degrees, DataLoader workers.
SEED_LOADERS = {
    "resnet18": {"batch_size": 128, "mean": 0.5, "std": 0.5, "rotate": 10, "workers": 2},
    "mlp": {"batch_size": 64, "mean": 0.5, "std": 0.5, "rotate": 0, "workers": 0},
    "lenet": {"batch_size": 200, "mean": 0.5, "std": 0.5, "rotate": 0, "workers": 0},
    "cnn6": {"batch_size": 64, "mean": 0.0, "std": 1.0, "rotate": 0, "workers": 0},
    "cnn2": {"batch_size": 32, "mean": 0.0, "std": 1.0, "rotate": 0, "workers": 0},
}
SEED_ACCURACY = 0.9916  # seed 002, SGD 0.1 momentum 0.9, 10 epochs


def seed_recipe(name: str) -> ModelParams:
    """An SGD recipe with the seed's batch size, normalisation and rotation (constant lr)."""
    cfg = SEED_LOADERS[name]
    return ModelParams(arch=name, optimizer="sgd", lr=0.01, momentum=0.9, batch_size=cfg["batch_size"], epochs=1,
                       rotate_deg=cfg["rotate"], norm_mean=cfg["mean"], norm_std=cfg["std"])


def seed_loader(raw: Path, name: str, images: int, batch_size: int | None = None) -> DataLoader:
    """torchvision MNIST with the seed's PIL transforms, as its DataLoader."""
    cfg = SEED_LOADERS[name]
    steps = ([transforms.RandomRotation(cfg["rotate"])] if cfg["rotate"] else []) + [
        transforms.ToTensor(), transforms.Normalize((cfg["mean"],), (cfg["std"],))]
    dataset = datasets.MNIST(raw, train=True, download=False, transform=transforms.Compose(steps))
    return DataLoader(Subset(dataset, range(min(images, len(dataset)))), batch_size=batch_size or cfg["batch_size"], shuffle=True,
                      num_workers=cfg["workers"], generator=torch.Generator().manual_seed(0))


def seed_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> int:
    """One pass the seeds' way; returns the number of images trained on."""
    model.train()
    seen = 0
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        seen += len(y)
    return seen


def our_setup(recipe: ModelParams, images: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    """A freshly seeded model in the recipe's memory format, its optimizer and its schedule over `images` per epoch."""
    torch.manual_seed(0)
    model = build_model(recipe.arch)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, recipe)
    return model, optimizer, build_scheduler(optimizer, recipe, len(batch_slices(images, recipe.batch_size)))


def our_rate(images: torch.Tensor, labels: torch.Tensor, recipe: ModelParams) -> float:
    """Images/s of one epoch of our training path over (N, 28, 28) uint8 images, fresh model."""
    model, optimizer, scheduler = our_setup(recipe, len(images))
    start = time.perf_counter()
    train_one_epoch(model, optimizer, scheduler, images, labels, recipe, torch.Generator().manual_seed(0))
    return len(images) / (time.perf_counter() - start)


def throughput(raw: Path, name: str, images: int, committed: ModelParams) -> tuple[float, float]:
    """Images/s the seeds' way and our way, same model, optimiser, batch size and image count.

    Our way takes the memory format and bf16 autocast of the committed recipe (params.yaml).
    """
    recipe = seed_recipe(name)
    torch.manual_seed(0)
    model = build_model(name)
    optimizer = build_optimizer(model, recipe)
    start = time.perf_counter()
    seen = seed_epoch(model, optimizer, seed_loader(raw, name, images))
    seed_rate = seen / (time.perf_counter() - start)
    train_images, train_labels = load_raw(raw, train=True)
    ours = dataclasses.replace(recipe, channels_last=committed.channels_last, bf16=committed.bf16)
    return seed_rate, our_rate(train_images[:images], train_labels[:images], ours)


FORMATS = ((False, False), (True, False), (False, True), (True, True))  # (channels_last, bf16)


def format_rates(raw: Path, recipe: ModelParams, images: int) -> list[float]:
    """Images/s of our path for one committed recipe in each (memory format, bf16 autocast) of FORMATS."""
    train_images, train_labels = load_raw(raw, train=True)
    return [our_rate(train_images[:images], train_labels[:images],
                     dataclasses.replace(recipe, channels_last=channels_last, bf16=bf16))
            for channels_last, bf16 in FORMATS]


def accuracy_on(model: torch.nn.Module, test: tuple[torch.Tensor, torch.Tensor], mean: float, std: float,
                channels_last: bool) -> float:
    """Accuracy on (images, labels) held in memory."""
    images, labels = test
    return (predict_logits(model, images, 1000, mean, std, channels_last).argmax(1) == labels).float().mean().item()


def time_to_accuracy_seed_way(raw: Path, epochs: int) -> tuple[float | None, float]:
    """Seconds of training until lenet reaches SEED_ACCURACY with the seed's recipe and DataLoader."""
    torch.manual_seed(0)
    model = build_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = seed_loader(raw, "lenet", 60_000)
    test = load_raw(raw, train=False)  # read once, not every epoch
    elapsed, accuracy = 0.0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        seed_epoch(model, optimizer, loader)
        elapsed += time.perf_counter() - start
        accuracy = accuracy_on(model, test, 0.5, 0.5, False)
        if accuracy >= SEED_ACCURACY:
            return elapsed, accuracy
    return None, accuracy


def time_to_accuracy_our_way(raw: Path, recipe: ModelParams) -> tuple[float | None, float]:
    """Seconds of training until lenet reaches SEED_ACCURACY with our committed recipe and path."""
    images, labels = load_raw(raw, train=True)
    test = load_raw(raw, train=False)
    model, optimizer, scheduler = our_setup(recipe, len(images))
    generator = torch.Generator().manual_seed(0)
    elapsed, accuracy = 0.0, 0.0
    for epoch in range(1, recipe.epochs + 1):
        start = time.perf_counter()
        train_one_epoch(model, optimizer, scheduler, images, labels, recipe, generator,
                        augmented=augmented_epoch(epoch, recipe))
        elapsed += time.perf_counter() - start
        accuracy = accuracy_on(model, test, recipe.norm_mean, recipe.norm_std, recipe.channels_last)
        if accuracy >= SEED_ACCURACY:
            return elapsed, accuracy
    return None, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="download stage output")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the pipeline's train.threads)")
    parser.add_argument("--quick", action="store_true", help="fewer images, no time-to-accuracy (under 10 minutes)")
    parser.add_argument("--formats", action="store_true",
                        help="only our path, every model: NCHW/NHWC x float32/bf16 autocast (what params.yaml picks from)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    if args.formats:
        print(f"torch {torch.__version__}, {args.threads} threads; images/s of our training path, committed recipes\n")
        print("| model | batch | images | NCHW fp32 | NHWC fp32 | NCHW bf16 | NHWC bf16 | params.yaml |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for name in model_names(params):
            recipe = model_params(params, name)
            images = {"resnet18": 2_560, "bnnet": 5_000}.get(recipe.arch, 10_000)
            rates = " | ".join(f"{rate:,.0f}" for rate in format_rates(args.raw, recipe, images))
            picked = f"{'NHWC' if recipe.channels_last else 'NCHW'} {'bf16' if recipe.bf16 else 'fp32'}"
            print(f"| {name} | {recipe.batch_size} | {images:,} | {rates} | {picked} |", flush=True)
        return
    sizes = {"resnet18": 2_560, "mlp": 20_000, "lenet": 10_000, "cnn6": 10_000, "cnn2": 10_000} if args.quick else \
        {"resnet18": 12_800, "mlp": 60_000, "lenet": 60_000, "cnn6": 60_000, "cnn2": 60_000}
    print(f"torch {torch.__version__}, {args.threads} threads, CPU; images/s while training, same model, "
          "optimiser and batch size both ways\n")
    print("| model | batch | images | seeds' way (DataLoader + PIL) | ours (tensors) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, images in sizes.items():
        seed_rate, our_rate = throughput(args.raw, name, images, model_params(params, name))
        print(f"| {name} | {SEED_LOADERS[name]['batch_size']} | {images:,} | {seed_rate:,.0f} | {our_rate:,.0f} | "
              f"{our_rate / seed_rate:.2f}x |", flush=True)
    if args.quick:
        return
    print(f"\nlenet, training seconds until test accuracy >= {SEED_ACCURACY:.2%} (checked after each epoch):")
    seconds, accuracy = time_to_accuracy_seed_way(args.raw, epochs=10)
    print(f"- seed recipe (SGD 0.1, constant), the seeds' way: "
          + (f"{seconds:.0f} s" if seconds else f"not reached in 10 epochs (last: {accuracy:.2%})"), flush=True)
    recipe = model_params(params, "lenet")
    seconds, accuracy = time_to_accuracy_our_way(args.raw, recipe)
    print(f"- our recipe (params.yaml), our way: "
          + (f"{seconds:.0f} s ({accuracy:.2%})" if seconds else f"not reached in {recipe.epochs} epochs (last: {accuracy:.2%})"))


if __name__ == "__main__":
    main()
