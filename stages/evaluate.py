"""Stage evaluate@<model>: test metrics JSON, predictions and per-class CSVs, val and test logits."""

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from mnist_pipeline.artifacts import load_model
from mnist_pipeline.cli import keep_freed_memory, load_checked_params, pin_threads, run, write_json
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import pin_numerics, runtime_environment
from mnist_pipeline.evaluation import classification_metrics
from mnist_pipeline.inference import predict_logits, score, select_device
from mnist_pipeline.models import MODELS, count_parameters
from mnist_pipeline.params import evaluate_params, train_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument(
        "--model-file", required=True, type=Path, help="train stage output (models/<model>.pt)"
    )
    parser.add_argument("--val", required=True, type=Path, help="val split (data/processed/val.pt)")
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument(
        "--timing", required=True, type=Path, help="JSON of inference speed, kept apart from metrics"
    )
    parser.add_argument("--predictions", required=True, type=Path, help="CSV actual,predicted per test image")
    parser.add_argument("--per-class", required=True, type=Path, help="CSV digit,accuracy")
    parser.add_argument(
        "--logits", required=True, type=Path, help="val and test logits, (N, 10) each, for the ensemble"
    )
    parser.add_argument(
        "--env", required=True, type=Path, help="JSON of the machine and kernels that scored it"
    )
    args = parser.parse_args()

    raw = load_checked_params(args.params, MODELS)
    numerics = pin_numerics(raw)  # before torch computes anything
    params, settings = evaluate_params(raw), train_params(raw)
    pin_threads(settings.threads)
    keep_freed_memory()
    device = select_device(settings.device)
    model, record = load_model(args.model_file, device, made_by=f"train@{args.model_file.stem}")
    images, labels = load_split(args.test)

    start = time.perf_counter()
    logits = predict_logits(model, images, params.batch_size, record.preprocessing, record.test_shifts)
    seconds = time.perf_counter() - start
    val_images, val_labels = load_split(args.val)  # the ensemble stage chooses its members on these
    val_logits = predict_logits(
        model, val_images, params.batch_size, record.preprocessing, record.test_shifts
    )

    metrics = classification_metrics(logits, labels)
    metrics.update(
        parameters=count_parameters(model),
        epochs_run=record.epochs_run,
        best_epoch=record.best_epoch,
        val_accuracy=round(score(val_logits, val_labels)["accuracy"], 6),
        test_shifts=record.test_shifts,  # chosen on val by the train stage
        test_images=len(labels),
    )
    write_json(args.metrics, metrics)
    scored_in = runtime_environment(device, settings.threads, bf16=False, numerics=numerics)  # float32
    write_json(args.env, scored_in)
    write_json(
        args.timing,
        {
            "inference_seconds": round(seconds, 3),  # the test split, with test-time shifts when on
            "images_per_second": round(len(labels) / seconds, 1),
            "device": str(device),
            "threads": settings.threads,
        },
    )
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"actual": labels.numpy(), "predicted": logits.argmax(1).numpy()}).to_csv(
        args.predictions, index=False
    )
    args.per_class.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "digit": list(metrics["per_class_accuracy"]),
            "accuracy": list(metrics["per_class_accuracy"].values()),
        }
    ).to_csv(args.per_class, index=False)
    args.logits.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"val": val_logits, "test": logits}, args.logits)
    print(f"{args.model_file}: test accuracy {metrics['accuracy']:.4%}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    run(main)
