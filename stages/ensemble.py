"""Stage ensemble: members and weights chosen on val (near-best average or Caruana, whichever makes fewer
out-of-fold val errors), scored on test once."""

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.ensembling import Choice, EnsembleFile, choose_ensemble, combine
from mnist_pipeline.evaluation import classification_metrics
from mnist_pipeline.fanin import add_model_arguments, check_models, model_files
from mnist_pipeline.files import read_logits, write_csv, write_json
from mnist_pipeline.params import ensemble_params
from mnist_pipeline.runtime import setup_process


def parse_args() -> argparse.Namespace:
    """The stage's paths, as dvc.yaml gives them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    add_model_arguments(parser, {"--logits": "each candidate's val and test logits (data/logits/{model}.pt)"})
    parser.add_argument("--val", required=True, type=Path, help="val split (data/processed/val.pt)")
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--predictions", required=True, type=Path, help="CSV actual,predicted per test image")
    parser.add_argument(
        "--out", required=True, type=Path, help="JSON of the members, weights and temperatures, for predict"
    )
    return parser.parse_args()


def ensemble_metrics(
    combined: torch.Tensor,
    labels: torch.Tensor,
    val_images: int,
    choice: Choice,
    record: EnsembleFile,
    candidates: list[str],
) -> dict[str, Any]:
    """The test metrics of the combined log-probabilities, with what was chosen on val and why."""
    chosen, images = choice.chosen, val_images
    metrics = classification_metrics(combined, labels)
    metrics.update(
        members=record.members,
        temperatures=record.temperatures,
        val_accuracy=record.val_accuracy,
        val_loss=round(chosen.val_loss, 6),
        rule=chosen.rule,
        why=choice.reason(),  # the whole sentence is printed below
        val_errors=chosen.val_errors(images),
        cv_val_errors=choice.cv_errors[chosen.rule],  # out of fold: what the rules were compared on
        alternative={
            "rule": choice.other.rule,
            "members": record.alternative["members"],
            "val_accuracy": record.alternative["val_accuracy"],
            "val_errors": choice.other.val_errors(images),
            "cv_val_errors": choice.cv_errors[choice.other.rule],
        },
        best_member=chosen.best_member,
        best_member_val_accuracy=round(chosen.best_member_val_accuracy, 6),
        candidates=sorted(candidates),
        test_images=len(labels),
    )
    return metrics


def main() -> None:
    args = parse_args()
    stage_outputs("ensemble", args.metrics, args.out)
    config = load_checked_params(args.params)
    check_models(args.models, config)
    setup_process(config)  # the softmax and temperature fits below run in the pinned kernels and threads
    params = ensemble_params(config)
    logits = {
        name: read_logits(path, made_by=f"evaluate@{name}")
        for name, path in model_files(args.logits, args.models).items()
    }
    _, val_labels = load_split(args.val)
    _, test_labels = load_split(args.test)
    choice = choose_ensemble(
        {name: both["val"] for name, both in logits.items()},
        val_labels,
        params.rounds,
        params.within_errors,
        params.folds,
    )
    chosen = choice.chosen
    combined = combine(
        {name: logits[name]["test"] for name in chosen.weights}, chosen.weights, chosen.temperatures
    )
    record = EnsembleFile.from_choice(choice, params.rounds, params.within_errors)
    metrics = ensemble_metrics(combined, test_labels, len(val_labels), choice, record, list(logits))
    write_json(args.metrics, metrics)
    record.save(args.out)
    write_csv(
        pd.DataFrame({"actual": test_labels.numpy(), "predicted": combined.argmax(1).numpy()}),
        args.predictions,
    )
    weights = ", ".join(f"{name} {weight:.2f}" for name, weight in chosen.weights.items())
    print(
        f"ensemble ({chosen.rule}) of {weights}: val accuracy {chosen.val_accuracy:.4%} "
        f"(best member {chosen.best_member} {chosen.best_member_val_accuracy:.4%}), "
        f"test accuracy {metrics['accuracy']:.4%}; {choice.why}"
    )


if __name__ == "__main__":
    run(main)
