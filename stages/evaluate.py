"""Stage evaluate@<model>: test metrics JSON, predictions and per-class CSVs, val and test logits."""

import argparse
import time
from pathlib import Path

import pandas as pd

from mnist_pipeline.artifacts import load_model
from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.environment import runtime_environment
from mnist_pipeline.evaluation import classification_metrics
from mnist_pipeline.files import save_torch, write_csv, write_json
from mnist_pipeline.inference import predict_logits, score
from mnist_pipeline.models import MODELS, count_parameters
from mnist_pipeline.params import evaluate_params
from mnist_pipeline.progress import progress_to
from mnist_pipeline.runtime import setup_process


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    name = args.model_file.stem
    stage_outputs(f"evaluate@{name}")  # every output is cached: `dvc checkout` restores them
    config = load_checked_params(args.params, MODELS)
    runtime = setup_process(config)
    batch_size = evaluate_params(config).batch_size
    model, record = load_model(args.model_file, runtime.device, made_by=f"train@{name}")
    progress, views = progress_to(name), " x5 shifts" if record.test_shifts else ""
    images, labels = load_split(args.test)
    with progress(f"test{views}", len(images)) as advance:
        start = time.perf_counter()
        logits = predict_logits(model, images, batch_size, record.preprocessing, record.test_shifts, advance)
        seconds = time.perf_counter() - start
    val_images, val_labels = load_split(args.val)  # the ensemble stage chooses its members on these
    with progress(f"val{views}", len(val_images)) as advance:
        val_logits = predict_logits(
            model, val_images, batch_size, record.preprocessing, record.test_shifts, advance
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
    write_json(args.env, runtime_environment(runtime.device, runtime.threads, False, runtime.numerics))
    write_json(
        args.timing,
        {
            "inference_seconds": round(seconds, 3),  # the test split, with test-time shifts when on
            "images_per_second": round(len(labels) / seconds, 1),
            "device": str(runtime.device),
            "threads": runtime.threads,
        },
    )
    predicted = pd.DataFrame({"actual": labels.numpy(), "predicted": logits.argmax(1).numpy()})
    write_csv(predicted, args.predictions)
    per_class = metrics["per_class_accuracy"]
    write_csv(pd.DataFrame({"digit": list(per_class), "accuracy": list(per_class.values())}), args.per_class)
    save_torch({"val": val_logits, "test": logits}, args.logits)
    print(f"{args.model_file}: test accuracy {metrics['accuracy']:.4%}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    run(main)
