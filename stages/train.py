"""Stage train@<model>: fit one model on the train split, select on val, resume after a kill."""

import argparse
from pathlib import Path

import pandas as pd
import torch

from mnist_pipeline.checkpoint import FileCheckpointer, file_digest, fingerprint, package_digest, save_model
from mnist_pipeline.cli import keep_freed_memory, load_checked_params, pin_threads, run, write_csv, write_json
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import runtime_environment
from mnist_pipeline.models import MODELS, build_model, count_parameters
from mnist_pipeline.params import model_params, train_params, validate_seed
from mnist_pipeline.training import fit, select_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--model", required=True, help="a name under models: in params.yaml")
    parser.add_argument("--data", required=True, type=Path, help="preprocess output folder")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (models/<model>.pt)")
    parser.add_argument("--history", required=True, type=Path, help="per-epoch CSV (plots/train/<model>.csv)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resume file, deleted on success")
    parser.add_argument("--env", required=True, type=Path, help="JSON of the machine and kernels that trained it")
    args = parser.parse_args()

    raw = load_checked_params(args.params, MODELS)
    seed, settings, recipe = validate_seed(raw["seed"]), train_params(raw), model_params(raw, args.model)
    pin_threads(settings.threads)
    keep_freed_memory()
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = select_device(settings.device)

    train_path, val_path = args.data / "train.pt", args.data / "val.pt"
    train_data, val_data = load_split(train_path), load_split(val_path)
    torch.manual_seed(seed)  # weight initialisation
    model = build_model(recipe.arch).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run_id = fingerprint(recipe, seed, settings, file_digest(train_path), file_digest(val_path),
                         package_digest(), torch.__version__, str(device))
    checkpointer = FileCheckpointer(args.checkpoint, run_id)

    printed = 0

    def progress(history: list[dict]) -> None:
        """Print the epochs not printed yet; rewrite the history CSV whole, so `dvc plots show` shows them now."""
        nonlocal printed
        for row in history[printed:]:
            print(f"{args.model} epoch {row['epoch']:3d}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
                  f"acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
                  f"{row['seconds']:.1f}s", flush=True)
        printed = len(history)
        # written beside the checkpoint, then renamed: plots/train/ never holds a half-written or stray file
        write_csv(pd.DataFrame(history), args.history, scratch=args.checkpoint.parent)

    print(f"{args.model}: {recipe.arch}, {count_parameters(model):,} parameters, {len(train_data[0])} train images, "
          f"device {device}, {settings.threads} threads", flush=True)
    result = fit(model, recipe, train_data, val_data, seed, settings.eval_batch_size, checkpointer, progress)
    if result.resumed_from:
        print(f"{args.model}: resumed after epoch {result.resumed_from} from {args.checkpoint}")
    save_model(args.out, recipe.arch, result.best_state, {
        "norm_mean": recipe.norm_mean, "norm_std": recipe.norm_std, "channels_last": recipe.channels_last,
        "epochs_run": len(result.history), "best_epoch": result.best_epoch,
    })
    write_json(args.env, runtime_environment(device, settings.threads, recipe.bf16))
    checkpointer.remove()
    print(f"{args.model}: best val accuracy at epoch {result.best_epoch} of {len(result.history)}; wrote {args.out}")


if __name__ == "__main__":
    run(main)
