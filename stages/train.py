"""Stage train@<model>: fit one model on the train split, select on val, resume after a kill."""

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import torch

from mnist_pipeline.artifacts import FileCheckpointer, ModelFile, package_digest
from mnist_pipeline.cli import (
    file_digest,
    fingerprint,
    keep_freed_memory,
    load_checked_params,
    pin_threads,
    run,
    write_csv,
    write_json,
)
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import bit_class, pin_numerics, runtime_environment
from mnist_pipeline.inference import choose_test_shifts, select_device
from mnist_pipeline.models import MODELS, build_model, count_parameters
from mnist_pipeline.params import model_params, train_params, validate_seed
from mnist_pipeline.training import fit_epochs, preprocessing_of, use_deterministic_kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--model", required=True, help="a name under models: in params.yaml")
    parser.add_argument("--data", required=True, type=Path, help="preprocess output folder")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (models/<model>.pt)")
    parser.add_argument("--history", required=True, type=Path, help="per-epoch CSV (plots/train/<model>.csv)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resume file, deleted on success")
    parser.add_argument(
        "--env", required=True, type=Path, help="JSON of the machine and kernels that trained it"
    )
    args = parser.parse_args()

    raw = load_checked_params(args.params, MODELS)
    numerics = pin_numerics(raw)  # before torch computes anything
    seed, settings, recipe = validate_seed(raw["seed"]), train_params(raw), model_params(raw, args.model)
    pin_threads(settings.threads)
    keep_freed_memory()
    use_deterministic_kernels()
    device = select_device(settings.device)

    train_path, val_path = args.data / "train.pt", args.data / "val.pt"
    train_data, val_data = load_split(train_path), load_split(val_path)
    data = {"train": file_digest(train_path), "val": file_digest(val_path)}
    preprocessing = preprocessing_of(recipe)
    torch.manual_seed(seed)  # weight initialisation
    model = preprocessing.prepare(build_model(recipe.arch).to(device))
    run_id = fingerprint(
        recipe,
        seed,
        settings,
        data["train"],
        data["val"],
        package_digest(),
        torch.__version__,
        str(device),
        numerics,
    )
    checkpointer = FileCheckpointer(args.checkpoint, run_id)

    print(
        f"{args.model}: {recipe.arch}, {count_parameters(model):,} parameters, "
        f"{len(train_data[0])} train images, "
        f"device {device}, {settings.threads} threads",
        flush=True,
    )
    restored = 0
    for epoch in fit_epochs(  # at least one epoch: params validation keeps epochs >= 1
        model, recipe, train_data, val_data, seed, settings.eval_batch_size, checkpointer
    ):
        row, restored = epoch.row, restored + epoch.resumed
        print(
            f"{args.model} epoch {row['epoch']:3d}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
            f"{row['seconds']:.1f}s" + (f"  (restored from {args.checkpoint})" if epoch.resumed else ""),
            flush=True,
        )
        # the whole history so far, so that `dvc plots show` shows it now; written beside the checkpoint and
        # renamed, so plots/train/ never holds a half-written or stray file
        write_csv(pd.DataFrame(epoch.history), args.history, scratch=args.checkpoint.parent)
    if restored:
        print(f"{args.model}: resumed after epoch {restored} from {args.checkpoint}")

    model.load_state_dict(epoch.best_state)
    test_shifts, val_scores = choose_test_shifts(
        model, recipe.test_shifts, *val_data, settings.eval_batch_size, preprocessing
    )
    print(
        f"{args.model}: test-time shifts {'on' if test_shifts else 'off'} ({recipe.test_shifts}; val "
        + ", ".join(f"{mode} {s['accuracy']:.4f}" for mode, s in val_scores.items())
        + ")"
    )
    environment = runtime_environment(device, settings.threads, recipe.bf16, numerics)
    ModelFile(
        name=args.model,
        arch=recipe.arch,
        weights=epoch.best_state,
        preprocessing=preprocessing,
        recipe=dataclasses.asdict(recipe),
        seed=seed,
        data=data,
        environment=bit_class(environment),  # what decides the bits; the CPU's name goes to --env
        epochs_run=len(epoch.history),
        best_epoch=epoch.best_epoch,
        test_shifts=test_shifts,
        val_scores=val_scores,
    ).save(args.out)
    write_json(args.env, environment)
    checkpointer.remove()
    print(
        f"{args.model}: best val accuracy at epoch {epoch.best_epoch} of {len(epoch.history)}; "
        f"wrote {args.out}"
    )


if __name__ == "__main__":
    run(main)
