"""Figures from the evaluate and train outputs; each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def training_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Loss and accuracy, train (dashed) and val (solid), per epoch, one colour per model."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, df) in enumerate(histories.items()):
        color = f"C{i % 10}"
        ax_loss.plot(df["epoch"], df["train_loss"], "--", color=color, alpha=0.7)
        ax_loss.plot(df["epoch"], df["val_loss"], "-", color=color, label=name)
        ax_acc.plot(df["epoch"], 100 * df["train_acc"], "--", color=color, alpha=0.7)
        ax_acc.plot(df["epoch"], 100 * df["val_acc"], "-", color=color, label=name)
    ax_loss.set(title="Loss (dashed: train, solid: val)", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    ax_acc.set(title="Accuracy (dashed: train, solid: val)", xlabel="epoch", ylabel="accuracy, %")
    ax_acc.set_ylim(bottom=max(90.0, ax_acc.get_ylim()[0]))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_heatmap(matrix: list[list[int]], title: str, normalize: bool) -> Figure:
    """10x10 heat map, rows = actual digit, columns = predicted; counts annotated in each cell."""
    counts = np.asarray(matrix)
    shown = counts / counts.sum(1, keepdims=True).clip(min=1) if normalize else counts
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # Log-ish colour scale so that the few off-diagonal errors are visible next to ~1000 correct.
    image = ax.imshow(np.sqrt(shown), cmap="Blues")
    for (r, c), value in np.ndenumerate(counts):
        text = f"{shown[r, c]:.3f}" if normalize and r == c else str(value)
        dark = shown[r, c] > 0.5 * shown.max()
        if value or r == c:
            ax.text(c, r, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="actual", title=title)
    fig.colorbar(image, ax=ax, label="sqrt(share of row)" if normalize else "sqrt(count)")
    fig.tight_layout()
    return fig


def per_class_bars(per_class: dict[str, dict[str, float]]) -> Figure:
    """Grouped bars: per-digit test accuracy of every model."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    names = list(per_class)
    width = 0.8 / max(1, len(names))
    digits = np.arange(10)
    for i, name in enumerate(names):
        values = [100 * per_class[name][str(d)] for d in digits]
        ax.bar(digits + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    lowest = min(100 * v for acc in per_class.values() for v in acc.values())
    ax.set(xticks=digits, xlabel="digit", ylabel="test accuracy, %", title="Per-class test accuracy",
           ylim=(max(0.0, lowest - 1), 100.2))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(names))
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, titles: list[str], cols: int, title: str, title_colors: list[str] | None = None) -> Figure:
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


def leaderboard(metrics: dict[str, dict], histories: dict[str, pd.DataFrame], timings: dict[str, dict]) -> pd.DataFrame:
    """One row per model, best test accuracy first."""
    rows = []
    for name, m in metrics.items():
        worst = min(m["per_class_accuracy"], key=lambda digit: m["per_class_accuracy"][digit])
        rows.append({
            "model": name,
            "parameters": m.get("parameters"),
            "test_accuracy": m["accuracy"],
            "worst_class": int(worst),
            "worst_class_accuracy": m["per_class_accuracy"][worst],
            "epochs": m.get("epochs_run"),
            "training_seconds": round(float(histories[name]["seconds"].sum()), 1) if name in histories else None,
            "inference_images_per_second": timings.get(name, {}).get("images_per_second"),
        })
    # nullable integers: counts print as 116730, not 116730.0, beside the ensemble's empty cells
    board = pd.DataFrame(rows).astype({"parameters": "Int64", "epochs": "Int64"})
    return board.sort_values("test_accuracy", ascending=False, kind="stable").reset_index(drop=True)


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table with percentages."""
    lines = ["| model | parameters | test accuracy | worst class | epochs | training s | inference images/s |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for r in board.itertuples():
        params = "—" if pd.isna(r.parameters) else f"{int(r.parameters):,}"
        epochs = "—" if pd.isna(r.epochs) else str(int(r.epochs))
        seconds = "—" if pd.isna(r.training_seconds) else f"{r.training_seconds:,.0f}"
        speed = "—" if pd.isna(r.inference_images_per_second) else f"{r.inference_images_per_second:,.0f}"
        lines.append(f"| {r.model} | {params} | {100 * r.test_accuracy:.2f}% | {r.worst_class} "
                     f"({100 * r.worst_class_accuracy:.2f}%) | {epochs} | {seconds} | {speed} |")
    return "\n".join(lines) + "\n"
