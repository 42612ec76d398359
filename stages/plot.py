"""Stage plot: PNG figures of training curves, confusion matrices and per-class accuracy for all models."""

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mnist_pipeline.cli import load_checked_params, run
from mnist_pipeline.params import model_names, plot_params
from mnist_pipeline.plotting import confusion_heatmap, per_class_bars, training_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--metrics", required=True, type=Path, help="folder of metrics/<model>.json")
    parser.add_argument("--history", required=True, type=Path, help="folder of plots/train/<model>.csv")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG figures")
    args = parser.parse_args()
    raw = load_checked_params(args.params)
    params, names = plot_params(raw), model_names(raw)
    metrics = {}
    for name in [*names, "ensemble"]:
        with (args.metrics / f"{name}.json").open() as f:
            metrics[name] = json.load(f)
    histories = {name: pd.read_csv(args.history / f"{name}.csv") for name in names}

    args.out.mkdir(parents=True, exist_ok=True)
    figures = {"training_curves": training_curves(histories),
               "per_class_accuracy": per_class_bars({n: m["per_class_accuracy"] for n, m in metrics.items()})}
    for name, m in metrics.items():
        title = f"{name}: test accuracy {100 * m['accuracy']:.2f}%"
        figures[f"confusion_{name}"] = confusion_heatmap(m["confusion_matrix"], title, params.normalize_confusion)
    for stem, fig in figures.items():
        # Fixed metadata keeps PNG bytes identical across reruns.
        fig.savefig(args.out / f"{stem}.png", dpi=params.dpi, metadata={"Software": None})
        plt.close(fig)
    print(f"wrote {len(figures)} figures to {args.out}")


if __name__ == "__main__":
    run(main)
