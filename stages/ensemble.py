"""Stage ensemble: mean softmax of every trained model's test logits, scored like a single model."""

import argparse
from pathlib import Path

import pandas as pd
import torch

from mnist_pipeline.cli import load_checked_params, run, write_json
from mnist_pipeline.data import load_split
from mnist_pipeline.evaluation import classification_metrics, mean_softmax
from mnist_pipeline.params import model_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--logits", required=True, type=Path, help="folder of <model>.pt test logits")
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--predictions", required=True, type=Path, help="CSV actual,predicted per test image")
    args = parser.parse_args()
    names = model_names(load_checked_params(args.params))
    _, labels = load_split(args.test)
    logits = [torch.load(args.logits / f"{name}.pt", weights_only=True) for name in names]
    combined = mean_softmax(logits)
    metrics = classification_metrics(combined, labels)
    metrics.update(members=names, test_images=len(labels))
    write_json(args.metrics, metrics)
    pd.DataFrame({"actual": labels.numpy(), "predicted": combined.argmax(1).numpy()}).to_csv(args.predictions, index=False)
    print(f"ensemble of {', '.join(names)}: test accuracy {metrics['accuracy']:.4%}")


if __name__ == "__main__":
    run(main)
