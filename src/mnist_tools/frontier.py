"""Accuracy against training time: train recipes at other epoch counts and seeds, as the pipeline would.

    python -m mnist_tools.frontier --runs bnnet:6,8,10 lenet:4 --seeds 0 1 2 --out docs/frontier.csv

    python -m mnist_tools.frontier --combine resnet18:4 bnnet:6 cnn2:4 --logits build/frontier/logits

Each run is what `dvc exp run -S seed=S -S models.M.epochs=E` would train: the val split of seed S,
the train stage's loop, numerics, threads and test-time shift choice. One CSV row per run, appended as
each finishes; runs already in the CSV are skipped, so a killed sweep resumes. --logits keeps each run's
val and test logits (plain and shifted) for ensemble frontiers. Training minutes are the epochs' wall
time; they are only comparable when nothing else ran beside the sweep. --combine chooses an ensemble
of saved seed-0 runs on val as the ensemble stage does and prints its val and test accuracy, with the
training minutes the members would take at the per-epoch rate of the committed run (plots/train/).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd
import torch

from mnist_pipeline.cli import keep_freed_memory, load_checked_params, pin_threads, run
from mnist_pipeline.data import load_raw, split_train_val
from mnist_pipeline.ensembling import caruana_selection, combine
from mnist_pipeline.environment import pin_numerics
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.inference import choose_test_shifts, predict_modes, score, select_device
from mnist_pipeline.models import MODELS, build_model
from mnist_pipeline.params import model_params, preprocess_params, train_params
from mnist_pipeline.training import fit, preprocessing_of, use_deterministic_kernels

KEY = ["model", "epochs", "seed"]


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
    runs: list[tuple[str, int]], logits_dir: Path, val_labels: torch.Tensor, rounds: int
) -> dict:
    """Caruana selection over saved runs, each in its val-chosen shift mode; the chosen ensemble's scores."""
    val, test = {}, {}
    for name, epochs in runs:
        path = logits_dir / f"{name}-e{epochs}-s0.pt"
        if not path.is_file():
            raise PipelineError(
                f"{path} not found (fix: run the sweep with --runs {name}:{epochs} --logits {logits_dir})"
            )
        saved = torch.load(path, weights_only=True)
        plain, shifted = score(saved["val_plain"], val_labels), score(saved["val_shifted"], val_labels)
        mode = (
            "shifted"
            if (shifted["accuracy"], -shifted["loss"]) > (plain["accuracy"], -plain["loss"])
            else "plain"
        )
        key = f"{name}:{epochs}"
        val[key], test[key] = saved[f"val_{mode}"], saved[f"test_{mode}"]
    chosen = caruana_selection(val, val_labels, rounds)
    return {
        "weights": chosen.weights,
        "val": chosen.val_accuracy,
        "test_logits": combine(test, chosen.weights, chosen.temperatures),
    }


def epoch_seconds(name: str) -> float:
    """Mean seconds per epoch of the model in the committed run (plots/train/<name>.csv)."""
    return float(pd.read_csv(Path("plots/train") / f"{name}.csv")["seconds"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_tools.frontier",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--runs", nargs="+", help="model or model:epochs,epochs,...")
    which.add_argument(
        "--combine", nargs="+", help="model:epochs of saved seed-0 runs to choose an ensemble from"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="values of the top-level seed")
    parser.add_argument("--params", default="params.yaml", help="params file with the recipes")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="download stage output")
    parser.add_argument("--out", type=Path, help="CSV to append a row per run to (--runs)")
    parser.add_argument("--rounds", type=int, default=20, help="Caruana rounds (--combine)")
    parser.add_argument("--logits", type=Path, help="folder for <model>-e<epochs>-s<seed>.pt logits")
    args = parser.parse_args()

    raw = load_checked_params(args.params, MODELS)
    numerics = pin_numerics(raw)
    settings, split = train_params(raw), preprocess_params(raw)
    pin_threads(settings.threads)
    keep_freed_memory()
    use_deterministic_kernels()
    device = select_device(settings.device)
    train_images, train_labels = load_raw(args.raw, train=True)
    test_images, test_labels = load_raw(args.raw, train=False)
    if args.combine:
        if args.logits is None:
            parser.error("--combine needs --logits, the folder the sweep saved its logits in")
        runs = parse_runs(args.combine, list(raw["models"]))
        _, val_labels = split_train_val(train_images, train_labels, split.val_size, split.train_limit, 0)[
            "val"
        ]
        result = combine_runs(runs, args.logits, val_labels, args.rounds)
        test = (result["test_logits"].argmax(1) == test_labels).float().mean().item()
        minutes = sum(epochs * epoch_seconds(name) for name, epochs in runs) / 60
        weights = ", ".join(f"{key} {w:.2f}" for key, w in result["weights"].items())
        print(
            f"{' '.join(args.combine)}: {minutes:.1f} training min; "
            f"val {result['val']:.4f}, test {test:.4f}; {weights}"
        )
        return
    if args.out is None:
        parser.error("--runs needs --out, the CSV to append to")
    runs = parse_runs(args.runs, list(raw["models"]))
    done = pd.read_csv(args.out) if args.out.is_file() else pd.DataFrame(columns=KEY)
    finished = set(map(tuple, done[KEY].astype({"epochs": int, "seed": int}).values.tolist()))

    for seed in args.seeds:
        data = split_train_val(train_images, train_labels, split.val_size, split.train_limit, seed)
        for name, count in runs:
            recipe = model_params(raw, name, MODELS)
            if count:
                recipe = dataclasses.replace(
                    recipe, epochs=count, clean_epochs=min(recipe.clean_epochs, count)
                )
            if (name, recipe.epochs, seed) in finished:
                continue
            preprocessing = preprocessing_of(recipe)
            torch.manual_seed(seed)  # as the train stage does
            model = preprocessing.prepare(build_model(recipe.arch).to(device))
            start = time.perf_counter()
            result = fit(model, recipe, data["train"], data["val"], seed, settings.eval_batch_size)
            minutes = (time.perf_counter() - start) / 60
            model.load_state_dict(result.best_state)
            val_images, val_labels = data["val"]
            shifted, _ = choose_test_shifts(
                model, recipe.test_shifts, val_images, val_labels, settings.eval_batch_size, preprocessing
            )
            logits = {
                f"{part}_{mode}": output
                for part, images in (("val", val_images), ("test", test_images))
                for mode, output in predict_modes(
                    model, images, settings.eval_batch_size, preprocessing, ("plain", "shifted")
                ).items()
            }
            val_scores = {mode: score(logits[f"val_{mode}"], val_labels) for mode in ("plain", "shifted")}
            test_scores = {mode: score(logits[f"test_{mode}"], test_labels) for mode in ("plain", "shifted")}
            chosen = "shifted" if shifted else "plain"
            row = {
                "model": name,
                "epochs": recipe.epochs,
                "seed": seed,
                "train_minutes": round(minutes, 3),
                "best_epoch": result.best_epoch,
                "test_shifts": shifted,
                "val_acc": val_scores[chosen]["accuracy"],
                "test_acc": test_scores[chosen]["accuracy"],
                "val_acc_plain": val_scores["plain"]["accuracy"],
                "val_acc_shifted": val_scores["shifted"]["accuracy"],
                "test_acc_plain": test_scores["plain"]["accuracy"],
                "test_acc_shifted": test_scores["shifted"]["accuracy"],
                "numerics": numerics,
                "threads": settings.threads,
            }
            pd.DataFrame([row]).to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
            if args.logits:
                args.logits.mkdir(parents=True, exist_ok=True)
                torch.save(logits, args.logits / f"{name}-e{recipe.epochs}-s{seed}.pt")
            print(
                f"{name} {recipe.epochs} epochs seed {seed}: {minutes:.2f} min, val {row['val_acc']:.4f}, "
                f"test {row['test_acc']:.4f} (shifts {'on' if shifted else 'off'})",
                flush=True,
            )


if __name__ == "__main__":
    run(main)
