"""Stage preprocess: raw IDX files → uint8 tensors for the train, val and test splits."""

import argparse
from pathlib import Path

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import load_raw, save_split, split_train_val
from mnist_pipeline.params import preprocess_params, validate_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--raw", required=True, type=Path, help="download stage output (data/raw)")
    parser.add_argument("--out", required=True, type=Path, help="folder for train.pt, val.pt, test.pt")
    args = parser.parse_args()
    stage_outputs("preprocess")
    config = load_checked_params(args.params)
    params, seed = preprocess_params(config), validate_seed(config["seed"])
    images, labels = load_raw(args.raw, train=True)
    splits = split_train_val(images, labels, params.val_size, params.train_limit, seed)
    splits["test"] = load_raw(args.raw, train=False)
    for name, (split_images, split_labels) in splits.items():
        save_split(args.out / f"{name}.pt", split_images, split_labels)
        print(f"{name}: {tuple(split_images.shape)} images")


if __name__ == "__main__":
    run(main)
