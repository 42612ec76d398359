"""Stage ensemble: members and weights chosen on val (Caruana selection), then scored on test once."""

import argparse
from pathlib import Path

import pandas as pd

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.ensembling import caruana_selection, combine
from mnist_pipeline.evaluation import classification_metrics
from mnist_pipeline.files import read_logits, write_csv, write_json
from mnist_pipeline.params import ensemble_params
from mnist_pipeline.runtime import setup_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument(
        "--logits", required=True, type=Path, nargs="+", help="data/logits/<model>.pt of each candidate"
    )
    parser.add_argument("--val", required=True, type=Path, help="val split (data/processed/val.pt)")
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--predictions", required=True, type=Path, help="CSV actual,predicted per test image")
    parser.add_argument(
        "--out", required=True, type=Path, help="JSON of the members, weights and temperatures, for predict"
    )
    args = parser.parse_args()
    stage_outputs("ensemble", args.metrics, args.predictions, args.out)
    config = load_checked_params(args.params)
    setup_process(config)  # the softmax and temperature fits below run in the pinned kernels and threads
    params = ensemble_params(config)
    logits = {path.stem: read_logits(path, made_by=f"evaluate@{path.stem}") for path in args.logits}
    _, val_labels = load_split(args.val)
    _, test_labels = load_split(args.test)
    chosen = caruana_selection(
        {name: both["val"] for name, both in logits.items()}, val_labels, params.rounds
    )
    combined = combine(
        {name: logits[name]["test"] for name in chosen.weights}, chosen.weights, chosen.temperatures
    )
    metrics = classification_metrics(combined, test_labels)
    metrics.update(
        members=chosen.weights,
        temperatures={name: chosen.temperatures[name] for name in chosen.weights},
        val_accuracy=round(chosen.val_accuracy, 6),
        val_loss=round(chosen.val_loss, 6),
        best_member=chosen.best_member,
        best_member_val_accuracy=round(chosen.rounds[0]["val_accuracy"], 6),
        candidates=sorted(logits),
        test_images=len(test_labels),
    )
    write_json(args.metrics, metrics)
    write_json(
        args.out,
        {
            "members": chosen.weights,
            "temperatures": {name: chosen.temperatures[name] for name in chosen.weights},
            "val_accuracy": round(chosen.val_accuracy, 6),
            "rule": f"Caruana selection with replacement on val ({params.rounds} rounds) from the best "
            "model: val accuracy, ties by the cross-entropy of the temperature-calibrated average",
            "rounds": [  # the search, for the record: what each round added and the val score after it
                {**r, "val_accuracy": round(r["val_accuracy"], 6), "val_loss": round(r["val_loss"], 6)}
                for r in chosen.rounds
            ],
        },
    )
    write_csv(
        pd.DataFrame({"actual": test_labels.numpy(), "predicted": combined.argmax(1).numpy()}),
        args.predictions,
    )
    weights = ", ".join(f"{name} {weight:.2f}" for name, weight in chosen.weights.items())
    print(
        f"ensemble of {weights}: val accuracy {chosen.val_accuracy:.4%} "
        f"(best member {chosen.best_member} {chosen.rounds[0]['val_accuracy']:.4%}), "
        f"test accuracy {metrics['accuracy']:.4%}"
    )


if __name__ == "__main__":
    run(main)
