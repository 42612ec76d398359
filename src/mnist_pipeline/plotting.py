"""Figures and the leaderboard from the train and evaluate outputs: pure functions; plot writes the files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def val_accuracy_chart(histories: dict[str, pd.DataFrame]) -> Figure:
    """Validation accuracy per epoch, one line per model: the PNG of `dvc plots show`'s first chart."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, df in histories.items():
        ax.plot(df["epoch"], 100 * df["val_acc"], marker="o", markersize=3, label=name)
    ax.set(title="Validation accuracy per epoch, every model", xlabel="epoch", ylabel="val accuracy, %")
    ax.set_ylim(bottom=max(90.0, ax.get_ylim()[0]))  # the epochs worth comparing sit above 90%
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_heatmap(matrix: list[list[int]], title: str, normalize: bool) -> Figure:
    """10x10 heat map of the mistakes, rows = actual digit, columns = predicted; the correct answers left out.

    Next to ~1,000 correct answers per digit the few mistakes would not show, so the diagonal is blank
    and the colour scale spans the mistakes alone; normalize shows each row's shares instead of counts.
    """
    counts = np.asarray(matrix)
    shown = counts / counts.sum(1, keepdims=True).clip(min=1) if normalize else counts.astype(float)
    mistakes = np.ma.masked_array(shown, mask=np.eye(len(counts), dtype=bool))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(mistakes, cmap="Reds", vmin=0)
    top = mistakes.max()  # 0 without mistakes, and then no cell is labelled
    for (r, c), value in np.ndenumerate(counts):
        if r != c and value:
            ax.text(
                c,
                r,
                f"{shown[r, c]:.3f}" if normalize else str(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shown[r, c] > 0.6 * top else "black",
            )
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="actual", title=title)
    fig.colorbar(image, ax=ax, label="share of the row's images" if normalize else "test images")
    fig.tight_layout()
    return fig


def per_class_error_bars(per_class: dict[str, dict[str, float]]) -> Figure:
    """Grouped bars: each model's test error rate per digit, in %, as `dvc plots show` draws it."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    names = list(per_class)
    width = 0.8 / max(1, len(names))
    digits = np.arange(10)
    for i, name in enumerate(names):
        errors = [100 * (1 - per_class[name][str(d)]) for d in digits]
        ax.bar(digits + (i - (len(names) - 1) / 2) * width, errors, width, label=name)
    ax.set(xticks=digits, xlabel="digit", ylabel="test error rate, %", title="Test error rate per digit (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(names))
    fig.tight_layout()
    return fig


def image_grid(
    images: np.ndarray, titles: list[str], cols: int, title: str, title_colors: list[str] | None = None
) -> Figure:
    """Tiles of (N, 28, 28) uint8 digits with a caption each."""
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.25, rows * 1.4 + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[i], fontsize=7, color=(title_colors or ["black"] * len(images))[i])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` wrong predictions made with the highest probability, most confident first."""
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    order = np.argsort(-probs[wrong, predicted[wrong]], kind="stable")
    return wrong[order[:count]]


def leaderboard(
    metrics: dict[str, dict], histories: dict[str, pd.DataFrame], timings: dict[str, dict]
) -> pd.DataFrame:
    """One row per model, best test accuracy first."""
    rows = []
    for name, m in metrics.items():
        worst = min(m["per_class_accuracy"], key=lambda digit: m["per_class_accuracy"][digit])
        rows.append(
            {
                "model": name,
                "parameters": m.get("parameters"),
                "test_accuracy": m["accuracy"],
                "val_accuracy": m.get("val_accuracy"),
                "test_shifts": m.get("test_shifts"),  # chosen on val; None for the ensemble
                "worst_class": int(worst),
                "worst_class_accuracy": m["per_class_accuracy"][worst],
                "epochs": m.get("epochs_run"),
                "training_seconds": round(float(histories[name]["seconds"].sum()), 1)
                if name in histories
                else None,
                "inference_images_per_second": timings.get(name, {}).get("images_per_second"),
            }
        )
    # nullable integers: counts print as 116730, not 116730.0, beside the ensemble's empty cells
    board = pd.DataFrame(rows).astype({"parameters": "Int64", "epochs": "Int64"})
    return board.sort_values("test_accuracy", ascending=False, kind="stable").reset_index(drop=True)


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table with percentages."""
    lines = [
        "| model | parameters | test accuracy | val accuracy | test-time shifts | worst class | epochs "
        "| training s | inference images/s |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in board.itertuples():
        params = "—" if pd.isna(r.parameters) else f"{int(r.parameters):,}"
        epochs = "—" if pd.isna(r.epochs) else str(int(r.epochs))
        seconds = "—" if pd.isna(r.training_seconds) else f"{r.training_seconds:,.0f}"
        speed = "—" if pd.isna(r.inference_images_per_second) else f"{r.inference_images_per_second:,.0f}"
        val = "—" if pd.isna(r.val_accuracy) else f"{100 * r.val_accuracy:.2f}%"
        shifts = {True: "on", False: "off"}.get(r.test_shifts, "—")
        lines.append(
            f"| {r.model} | {params} | {100 * r.test_accuracy:.2f}% | {val} | {shifts} | {r.worst_class} "
            f"({100 * r.worst_class_accuracy:.2f}%) | {epochs} | {seconds} | {speed} |"
        )
    return "\n".join(lines) + "\n"
