"""Stage ensemble: mean softmax of the given models' test logits, scored like a single model."""

import argparse
from pathlib import Path

import pandas as pd

from mnist_pipeline.cli import load_checked_params, read_logits, run, write_json
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import pin_numerics
from mnist_pipeline.evaluation import classification_metrics, mean_softmax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument(
        "--logits", required=True, type=Path, nargs="+", help="data/logits/<model>.pt of each member"
    )
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--predictions", required=True, type=Path, help="CSV actual,predicted per test image")
    args = parser.parse_args()
    pin_numerics(load_checked_params(args.params))  # the softmax below runs in the pinned kernels
    names = [path.stem for path in args.logits]
    logits = [read_logits(path, made_by=f"evaluate@{path.stem}") for path in args.logits]
    _, labels = load_split(args.test)
    combined = mean_softmax(logits)
    metrics = classification_metrics(combined, labels)
    metrics.update(members=names, test_images=len(labels))
    write_json(args.metrics, metrics)
    pd.DataFrame({"actual": labels.numpy(), "predicted": combined.argmax(1).numpy()}).to_csv(
        args.predictions, index=False
    )
    print(f"ensemble of {', '.join(names)}: test accuracy {metrics['accuracy']:.4%}")


if __name__ == "__main__":
    run(main)
