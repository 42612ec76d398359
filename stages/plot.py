"""Stage plot: PNG figures and the leaderboard from every model's metrics, history and test logits."""

import argparse
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.fanin import add_model_arguments, check_models, model_files
from mnist_pipeline.files import read_csv, read_json, read_logits, write_atomic, write_csv, write_text
from mnist_pipeline.params import PlotParams, plot_params
from mnist_pipeline.plotting import (
    confident_mistakes,
    confusion_heatmap,
    image_grid,
    leaderboard,
    leaderboard_markdown,
    per_class_error_bars,
    val_accuracy_chart,
)
from mnist_pipeline.runtime import setup_process

GALLERY_SIZE = 24  # most confident mistakes shown per model
GRID_MODEL = "resnet18"  # tutorial 000 ends with an 8x8 grid of test images, label → prediction


def parse_args() -> argparse.Namespace:
    """The stage's paths, as dvc.yaml gives them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    add_model_arguments(
        parser,
        {
            "--metrics": "each model's metrics JSON (metrics/{model}.json)",
            "--timing": "each model's timing JSON (metrics/timing/{model}.json)",
            "--history": "each model's training history (plots/train/{model}.csv)",
            "--logits": "each model's val and test logits (data/logits/{model}.pt)",
        },
    )
    parser.add_argument("--ensemble-metrics", required=True, type=Path, help="the ensemble's metrics JSON")
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG figures")
    parser.add_argument(
        "--leaderboard", required=True, type=Path, help="leaderboard CSV; a .md twin is written beside it"
    )
    return parser.parse_args()


def read_records(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Each model's metrics (the ensemble's last), timings and training histories."""
    metrics = {
        name: read_json(path, made_by=f"evaluate@{name}")
        for name, path in model_files(args.metrics, args.models).items()
    }
    metrics["ensemble"] = read_json(args.ensemble_metrics, made_by="ensemble")
    timings = {
        name: read_json(path, made_by=f"evaluate@{name}")
        for name, path in model_files(args.timing, args.models).items()
    }
    histories = {
        name: read_csv(path, made_by=f"train@{name}")
        for name, path in model_files(args.history, args.models).items()
    }
    return metrics, timings, histories


def mistake_galleries(
    probs: dict[str, np.ndarray], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, Figure]:
    """Per model, its most confident mistakes on test, with the true and predicted digits."""
    figures = {}
    for name, p in probs.items():
        idx = confident_mistakes(p, labels.numpy(), GALLERY_SIZE)
        captions = [f"{labels[i]} → {p[i].argmax()} ({p[i].max():.2f})" for i in idx]
        figures[f"mistakes_{name}"] = image_grid(
            images[idx].numpy(),
            captions,
            cols=8,
            title=f"{name}: most confident mistakes (true → predicted (probability))",
        )
    return figures


def prediction_grid(probs: dict[str, np.ndarray], images: torch.Tensor, labels: torch.Tensor) -> Figure:
    """The first 64 test images with GRID_MODEL's predictions (the first model's when it is not run)."""
    grid_model = GRID_MODEL if GRID_MODEL in probs else next(iter(probs))
    predicted = probs[grid_model][:64].argmax(1)
    return image_grid(
        images[:64].numpy(),
        [f"{labels[i]}\n→ {predicted[i]}" for i in range(64)],
        cols=8,
        title=f"{grid_model}: the first 64 test images, label → prediction",
        title_colors=["black" if predicted[i] == labels[i] else "red" for i in range(64)],
    )


def make_figures(
    metrics: dict[str, Any],
    histories: dict[str, Any],
    probs: dict[str, np.ndarray],
    test: tuple[torch.Tensor, torch.Tensor],
    params: PlotParams,
) -> dict[str, Figure]:
    """Every figure, by file stem: the charts over all models, then one confusion map and gallery each."""
    figures = {
        "val_accuracy": val_accuracy_chart(histories),
        "per_class_error": per_class_error_bars({n: m["per_class_accuracy"] for n, m in metrics.items()}),
    }
    for name, m in metrics.items():
        title = f"{name}: test accuracy {100 * m['accuracy']:.2f}%"
        figures[f"confusion_{name}"] = confusion_heatmap(
            m["confusion_matrix"], title, params.normalize_confusion
        )
    figures |= mistake_galleries(probs, *test)
    figures["prediction_grid"] = prediction_grid(probs, *test)
    return figures


def write_figures(figures: dict[str, Figure], out: Path, dpi: int) -> None:
    """Each figure as out/<stem>.png, then closed."""
    for stem, fig in figures.items():
        # No software/date metadata, so the PNG bytes only change when the picture does.
        write_atomic(
            out / f"{stem}.png",
            lambda staged, fig=fig: fig.savefig(staged, format="png", dpi=dpi, metadata={"Software": None}),
        )
        plt.close(fig)


def main() -> None:
    args = parse_args()
    stage_outputs("plot", args.out, args.leaderboard, args.leaderboard.with_suffix(".md"))
    config = load_checked_params(args.params)
    check_models(args.models, config)
    setup_process(config)  # the softmax below runs in the pinned kernels and threads
    params = plot_params(config)
    metrics, timings, histories = read_records(args)
    test = load_split(args.test)
    logits = {
        name: read_logits(path, made_by=f"evaluate@{name}")["test"]
        for name, path in model_files(args.logits, args.models).items()
    }
    probs = {name: values.softmax(1).numpy() for name, values in logits.items()}
    figures = make_figures(metrics, histories, probs, test, params)
    write_figures(figures, args.out, params.dpi)
    board = leaderboard(metrics, histories, timings)
    write_csv(board, args.leaderboard)
    write_text(args.leaderboard.with_suffix(".md"), leaderboard_markdown(board))
    print(f"wrote {len(figures)} figures to {args.out} and {args.leaderboard}")


if __name__ == "__main__":
    run(main)
