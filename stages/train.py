"""Stage train@<model>: fit one model on the train split, select on val, resume after a kill."""

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mnist_pipeline.artifacts import FileCheckpointer, ModelFile, package_digest
from mnist_pipeline.cli import load_checked_params, resume_advice, run, stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import bit_class, runtime_environment
from mnist_pipeline.files import file_digest, fingerprint, write_csv, write_json
from mnist_pipeline.models import MODELS, count_parameters
from mnist_pipeline.params import ModelParams, TrainParams, model_params, model_seed, train_params
from mnist_pipeline.progress import progress_to
from mnist_pipeline.runtime import Runtime, setup_process
from mnist_pipeline.training import Epoch, TrainedModel, train_recipe


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--model", required=True, help="a name under models: in params.yaml")
    parser.add_argument("--data", required=True, type=Path, help="preprocess output folder")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (models/<model>.pt)")
    parser.add_argument(
        "--history", required=True, type=Path, help="per-epoch CSV (data/training/<model>/history.csv)"
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="resume file, deleted on success")
    parser.add_argument(
        "--env", required=True, type=Path, help="JSON of the machine and kernels that trained it"
    )
    return parser.parse_args()


def report_epoch(args: argparse.Namespace, epoch: Epoch) -> None:
    """Print the epoch's line and rewrite the whole history so far (`dvc plots show <file>` draws it now)."""
    row = epoch.row
    if epoch.resumed and row["epoch"] == 1:  # restored epochs come first, before any training
        print(f"{args.model}: resuming from {args.checkpoint}", flush=True)
    print(
        f"{args.model} epoch {row['epoch']:3d}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
        f"{row['seconds']:.1f}s" + ("  (restored)" if epoch.resumed else ""),
        flush=True,
    )
    write_csv(pd.DataFrame(epoch.history), args.history, float_format="%.6g")


def resume_file(
    path: Path, recipe: ModelParams, seed: int, settings: TrainParams, data: dict[str, str], runtime: Runtime
) -> FileCheckpointer:
    """The checkpoint, resumed only by the very same run: recipe, seed, settings, data, code, torch, device
    and numerics."""
    run_id = fingerprint(
        recipe,
        seed,
        settings,
        data["train"],
        data["val"],
        package_digest(),
        torch.__version__,
        str(runtime.device),
        runtime.numerics,
    )
    return FileCheckpointer(path, run_id)


def model_file(
    name: str,
    recipe: ModelParams,
    seed: int,
    data: dict[str, str],
    trained: TrainedModel,
    bits: dict[str, Any],
) -> ModelFile:
    """The file of the trained model: its best weights, and what made them (bits: environment.bit_class)."""
    return ModelFile(
        name=name,
        arch=recipe.arch,
        weights=trained.best_state,
        preprocessing=trained.preprocessing,
        recipe=dataclasses.asdict(recipe),
        seed=seed,
        data=data,
        environment=bits,
        epochs_run=len(trained.history),
        best_epoch=trained.best_epoch,
        test_shifts=trained.test_shifts,
        val_scores=trained.val_scores,
    )


def main() -> None:
    args = parse_args()
    stage = f"train@{args.model}"
    stage_outputs(stage, resume=resume_advice(stage, args.checkpoint))
    config = load_checked_params(args.params, MODELS)
    runtime = setup_process(config, deterministic=True)
    seed, settings, recipe = (
        model_seed(config, args.model),
        train_params(config),
        model_params(config, args.model),
    )
    train_path, val_path = args.data / "train.pt", args.data / "val.pt"
    train_data, val_data = load_split(train_path), load_split(val_path)
    data = {"train": file_digest(train_path), "val": file_digest(val_path)}
    checkpointer = resume_file(args.checkpoint, recipe, seed, settings, data, runtime)
    print(
        f"{args.model}: {recipe.arch}, seed {seed}, {len(train_data[0])} train images, "
        f"device {runtime.device}, {runtime.threads} threads",
        flush=True,
    )
    trained = train_recipe(
        recipe,
        seed,
        train_data,
        val_data,
        settings.eval_batch_size,
        runtime.device,
        checkpointer,
        progress_to(args.model),
        lambda epoch: report_epoch(args, epoch),
    )
    print(
        f"{args.model}: test-time shifts {'on' if trained.test_shifts else 'off'} ({recipe.test_shifts}; val "
        + ", ".join(f"{mode} {s['accuracy']:.4f}" for mode, s in trained.val_scores.items())
        + ")"
    )
    environment = runtime_environment(runtime.device, runtime.threads, recipe.bf16, runtime.numerics)
    # what decides the bits goes into the model file; the CPU's name only to --env
    model_file(args.model, recipe, seed, data, trained, bit_class(environment)).save(args.out)
    write_json(args.env, environment)
    checkpointer.remove()
    print(
        f"{args.model}: {count_parameters(trained.model):,} parameters, best val accuracy at epoch "
        f"{trained.best_epoch} of {len(trained.history)}; wrote {args.out}"
    )


if __name__ == "__main__":
    run(main)
