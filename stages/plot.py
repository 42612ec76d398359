"""Stage plot: PNG figures and the leaderboard from every model's metrics, history and test logits."""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import load_split
from mnist_pipeline.files import (
    metrics_stage,
    read_csv,
    read_json,
    read_logits,
    write_atomic,
    write_csv,
    write_text,
)
from mnist_pipeline.params import plot_params
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
GRID_MODEL = "resnet18"  # seed 000 ends with an 8x8 grid of test images, label → prediction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument(
        "--metrics", required=True, type=Path, nargs="+", help="metrics/<model>.json, ensemble last"
    )
    parser.add_argument("--timing", required=True, type=Path, nargs="+", help="metrics/timing/<model>.json")
    parser.add_argument("--history", required=True, type=Path, nargs="+", help="plots/train/<model>.csv")
    parser.add_argument("--logits", required=True, type=Path, nargs="+", help="data/logits/<model>.pt")
    parser.add_argument("--test", required=True, type=Path, help="test split (data/processed/test.pt)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG figures")
    parser.add_argument(
        "--leaderboard", required=True, type=Path, help="leaderboard CSV; a .md twin is written beside it"
    )
    args = parser.parse_args()
    stage_outputs("plot", args.out, args.leaderboard, args.leaderboard.with_suffix(".md"))
    config = load_checked_params(args.params)
    setup_process(config)  # the softmax below runs in the pinned kernels and threads
    params = plot_params(config)
    metrics = {path.stem: read_json(path, made_by=metrics_stage(path.stem)) for path in args.metrics}
    timings = {path.stem: read_json(path, made_by=f"evaluate@{path.stem}") for path in args.timing}
    histories = {path.stem: read_csv(path, made_by=f"train@{path.stem}") for path in args.history}
    images, labels = load_split(args.test)
    logits = {path.stem: read_logits(path, made_by=f"evaluate@{path.stem}")["test"] for path in args.logits}
    probs = {name: values.softmax(1).numpy() for name, values in logits.items()}
    names = list(probs)

    figures = {
        "val_accuracy": val_accuracy_chart(histories),
        "per_class_error": per_class_error_bars({n: m["per_class_accuracy"] for n, m in metrics.items()}),
    }
    for name, m in metrics.items():
        title = f"{name}: test accuracy {100 * m['accuracy']:.2f}%"
        figures[f"confusion_{name}"] = confusion_heatmap(
            m["confusion_matrix"], title, params.normalize_confusion
        )
    for name, p in probs.items():
        idx = confident_mistakes(p, labels.numpy(), GALLERY_SIZE)
        captions = [f"{labels[i]} → {p[i].argmax()} ({p[i].max():.2f})" for i in idx]
        figures[f"mistakes_{name}"] = image_grid(
            images[idx].numpy(),
            captions,
            cols=8,
            title=f"{name}: most confident mistakes (true → predicted (probability))",
        )
    grid_model = GRID_MODEL if GRID_MODEL in probs else names[0]
    predicted = probs[grid_model][:64].argmax(1)
    figures["prediction_grid"] = image_grid(
        images[:64].numpy(),
        [f"{labels[i]}\n→ {predicted[i]}" for i in range(64)],
        cols=8,
        title=f"{grid_model}: the first 64 test images, label → prediction",
        title_colors=["black" if predicted[i] == labels[i] else "red" for i in range(64)],
    )

    for stem, fig in figures.items():
        # No software/date metadata, so the PNG bytes only change when the picture does.
        write_atomic(
            args.out / f"{stem}.png",
            lambda staged, fig=fig: fig.savefig(
                staged, format="png", dpi=params.dpi, metadata={"Software": None}
            ),
        )
        plt.close(fig)
    board = leaderboard(metrics, histories, timings)
    write_csv(board, args.leaderboard)
    write_text(args.leaderboard.with_suffix(".md"), leaderboard_markdown(board))
    print(f"wrote {len(figures)} figures to {args.out} and {args.leaderboard}")


if __name__ == "__main__":
    run(main)
