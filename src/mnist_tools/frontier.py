"""Accuracy against training time: train recipes at other epoch counts and seeds, as the pipeline would.

    python -m mnist_tools.frontier --runs bnnet:6,8,10 lenet:4 --seeds 0 1 2 --out docs/frontier.csv

    python -m mnist_tools.frontier --combine resnet18:3 bnnet:8 bnnet_s1:8 --seeds 0 1 2 \
        --logits build/frontier/logits

Each run is what `dvc exp run -S seed=S -S models.M.epochs=E` would train: the val split of seed S,
the train stage's loop, numerics, threads and test-time shift choice. One CSV row per run, appended as
each finishes; runs already in the CSV are skipped, so a killed sweep resumes. --logits keeps each run's
val and test logits (plain and shifted) for ensemble frontiers. Training minutes are the epochs' wall
time; they are only comparable when nothing else ran beside the sweep. --combine chooses an ensemble
of saved runs of each seed on val as the ensemble stage does (params.yaml's ensemble: section) and prints
its rule, val and test accuracy, with the training minutes the members would take at the per-epoch rate
of the committed run (plots/train/), and the mean and standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from mnist_pipeline.cli import load_checked_params, run
from mnist_pipeline.data import load_raw, split_train_val
from mnist_pipeline.ensembling import choose_ensemble, combine
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import save_torch
from mnist_pipeline.inference import predict_modes, rank, score
from mnist_pipeline.models import MODELS
from mnist_pipeline.params import (
    ensemble_params,
    model_params,
    model_seed,
    preprocess_params,
    revise,
    train_params,
)
from mnist_pipeline.runtime import Runtime, setup_process
from mnist_pipeline.training import train_recipe

KEY = ["model", "epochs", "seed"]
ACCURACY_DIGITS = 6  # significant digits kept: a count over 5,000 val or 10,000 test images needs at most 4


def rounded(accuracy: float) -> float:
    """An accuracy without the float32 noise of its mean: 0.9692000150680542 → 0.9692 (the CSV is tracked)."""
    return float(f"{accuracy:.{ACCURACY_DIGITS}g}")


def parse_runs(specs: list[str], models: list[str]) -> list[tuple[str, int]]:
    """'bnnet:6,8' → [('bnnet', 6), ('bnnet', 8)]; a bare name keeps the recipe's own epochs (0)."""
    runs = []
    for spec in specs:
        name, _, epochs = spec.partition(":")
        if name not in models:
            raise PipelineError(
                f"--runs {spec}: no model {name!r} in params.yaml (fix: use one of {', '.join(models)})"
            )
        try:
            counts = [int(e) for e in epochs.split(",")] if epochs else [0]
        except ValueError:
            raise PipelineError(
                f"--runs {spec}: epochs must be integers (fix: write them as {name}:4,6)"
            ) from None
        runs += [(name, count) for count in counts]
    return runs


def combine_runs(
    runs: list[tuple[str, int]], seed: int, logits_dir: Path, val_labels: torch.Tensor, config: dict
) -> dict:
    """The ensemble stage's choice over saved runs of one seed, each in its val-chosen shift mode."""
    val, test = {}, {}
    for name, epochs in runs:
        path = logits_dir / f"{name}-e{epochs}-s{seed}.pt"
        if not path.is_file():
            raise PipelineError(
                f"{path} not found (fix: run the sweep with --runs {name}:{epochs} --seeds {seed} "
                f"--logits {logits_dir})"
            )
        saved = torch.load(path, weights_only=True)
        plain, shifted = score(saved["val_plain"], val_labels), score(saved["val_shifted"], val_labels)
        better = rank(shifted["accuracy"], shifted["loss"]) > rank(plain["accuracy"], plain["loss"])
        mode = "shifted" if better else "plain"
        key = f"{name}:{epochs}"
        val[key], test[key] = saved[f"val_{mode}"], saved[f"test_{mode}"]
    params = ensemble_params(config)
    choice = choose_ensemble(val, val_labels, params.rounds, params.within_errors, params.folds)
    chosen, other = choice.chosen, choice.other
    return {
        "rule": chosen.rule,
        "weights": chosen.weights,
        "val": chosen.val_accuracy,
        "why": choice.reason(),
        "test_logits": combine(test, chosen.weights, chosen.temperatures),
        "other": f"{other.rule} of {', '.join(other.weights)}: val {other.val_accuracy:.4f}",
    }


def epoch_seconds(name: str, config: dict) -> float:
    """Mean seconds per epoch of the model in the committed run (plots/train/<name>.csv); a model the
    run did not train (a new seed of bnnet) takes its architecture's rate."""
    path = Path("plots/train") / f"{name}.csv"
    if not path.is_file():
        path = path.with_name(f"{config['models'][name]['arch']}.csv")
    return float(pd.read_csv(path)["seconds"].mean())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_tools.frontier",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--runs", nargs="+", help="model or model:epochs,epochs,...")
    which.add_argument(
        "--combine", nargs="+", help="model:epochs of saved runs (of each --seeds) to choose an ensemble from"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="values of the top-level seed")
    parser.add_argument("--params", default="params.yaml", help="params file with the recipes")
    parser.add_argument("--mnist", type=Path, default=Path("data/raw"), help="download stage output")
    parser.add_argument("--out", type=Path, help="CSV to append a row per run to (--runs)")
    parser.add_argument("--logits", type=Path, help="folder for <model>-e<epochs>-s<seed>.pt logits")
    args = parser.parse_args()
    if args.combine and args.logits is None:
        parser.error("--combine needs --logits, the folder the sweep saved its logits in")
    if args.runs and args.out is None:
        parser.error("--runs needs --out, the CSV to append to")
    return args


def run_combine(args: argparse.Namespace, config: dict, mnist: dict[str, tuple]) -> None:
    """--combine: for each seed, the ensemble of its saved runs chosen on val; then the mean over seeds."""
    runs = parse_runs(args.combine, list(config["models"]))
    split = preprocess_params(config)
    minutes = sum(epochs * epoch_seconds(name, config) for name, epochs in runs) / 60
    tests = []
    for seed in args.seeds:
        _, val_labels = split_train_val(*mnist["train"], split.val_size, split.train_limit, seed)["val"]
        result = combine_runs(runs, seed, args.logits, val_labels, config)
        tests.append((result["test_logits"].argmax(1) == mnist["test"][1]).float().mean().item())
        weights = ", ".join(f"{key} {w:.2f}" for key, w in result["weights"].items())
        print(
            f"seed {seed}: {' '.join(args.combine)}: {minutes:.1f} training min; {result['rule']}: "
            f"val {result['val']:.4f}, test {tests[-1]:.4f}; {weights} ({result['why']}; not chosen: "
            f"{result['other']})",
            flush=True,
        )
    if len(tests) > 1:
        accuracy = torch.tensor(tests, dtype=torch.float64)
        print(f"test over seeds {args.seeds}: mean {accuracy.mean():.4%} ± {accuracy.std():.4%} (sample std)")


def sweep_row(name: str, epochs: int, seed: int, minutes: float, trained, logits: dict, labels: dict) -> dict:
    """One CSV row: the run's key, training minutes, and val/test accuracy plain, shifted and as chosen."""
    accuracy = {  # "val_plain", "val_shifted", "test_plain", "test_shifted"
        key: rounded(score(output, labels[key.split("_")[0]])["accuracy"]) for key, output in logits.items()
    }
    chosen = "shifted" if trained.test_shifts else "plain"
    return {
        "model": name,
        "epochs": epochs,
        "seed": seed,
        "train_minutes": round(minutes, 3),
        "best_epoch": trained.best_epoch,
        "test_shifts": trained.test_shifts,
        "val_acc": accuracy[f"val_{chosen}"],
        "test_acc": accuracy[f"test_{chosen}"],
        **{f"{part}_acc_{mode}": accuracy[f"{part}_{mode}"] for part in ("val", "test") for mode in MODES},
    }


MODES = ("plain", "shifted")


def run_sweep(args: argparse.Namespace, config: dict, mnist: dict[str, tuple], runtime: Runtime) -> None:
    """--runs: train each run not yet in --out, append its row, keep its logits (--logits)."""
    runs = parse_runs(args.runs, list(config["models"]))
    done = pd.read_csv(args.out) if args.out.is_file() else pd.DataFrame(columns=KEY)
    finished = set(map(tuple, done[KEY].astype({"epochs": int, "seed": int}).values.tolist()))
    split, settings = preprocess_params(config), train_params(config)
    for seed in args.seeds:
        data = split_train_val(*mnist["train"], split.val_size, split.train_limit, seed)
        seeded = {**config, "seed": seed}  # as `dvc exp run -S seed=S`: a model's seed_offset adds to it
        for name, count in runs:
            recipe = model_params(seeded, name, MODELS)
            if count:  # validated again: `--runs bnnet:-1` is refused as params.yaml would be
                recipe = revise(
                    recipe, f"models.{name}", epochs=count, clean_epochs=min(recipe.clean_epochs, count)
                )
            if (name, recipe.epochs, seed) in finished:
                continue
            start = time.perf_counter()
            seed_of_model, eval_batch = model_seed(seeded, name), settings.eval_batch_size
            trained = train_recipe(
                recipe, seed_of_model, data["train"], data["val"], eval_batch, runtime.device
            )
            minutes = (time.perf_counter() - start) / 60
            logits = {
                f"{part}_{mode}": output
                for part, images in (("val", data["val"][0]), ("test", mnist["test"][0]))
                for mode, output in predict_modes(
                    trained.model, images, settings.eval_batch_size, trained.preprocessing, MODES
                ).items()
            }
            labels = {"val": data["val"][1], "test": mnist["test"][1]}
            row = sweep_row(name, recipe.epochs, seed, minutes, trained, logits, labels)
            row |= {"numerics": runtime.numerics, "threads": runtime.threads}
            pd.DataFrame([row]).to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
            if args.logits:
                save_torch(logits, args.logits / f"{name}-e{recipe.epochs}-s{seed}.pt")
            print(
                f"{name} {recipe.epochs} epochs seed {seed}: {minutes:.2f} min, val {row['val_acc']:.4f}, "
                f"test {row['test_acc']:.4f} (shifts {'on' if trained.test_shifts else 'off'})",
                flush=True,
            )


def main() -> None:
    args = parse_args()
    config = load_checked_params(args.params, MODELS)
    runtime = setup_process(config, deterministic=True)
    mnist = {"train": load_raw(args.mnist, train=True), "test": load_raw(args.mnist, train=False)}
    if args.combine:
        run_combine(args, config, mnist)
    else:
        run_sweep(args, config, mnist, runtime)


if __name__ == "__main__":
    run(main)
