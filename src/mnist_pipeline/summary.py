"""Every model's headline numbers in one small metrics file, for a narrow `dvc exp show` table."""

from __future__ import annotations

from typing import Any

import pandas as pd


def headline(metrics: dict[str, Any], history: pd.DataFrame | None) -> dict[str, float | int]:
    """Test accuracy and loss, the worst digit and its accuracy, and the training seconds if it trained."""
    per_class = metrics["per_class_accuracy"]
    worst = min(per_class, key=per_class.__getitem__)  # ties go to the lower digit
    numbers: dict[str, float | int] = {
        "acc": metrics["accuracy"],
        "loss": round(metrics["loss"], 4),
        "worst_digit": int(worst),
        "worst_acc": per_class[worst],
    }
    if history is not None:
        numbers["train_s"] = round(float(history["seconds"].sum()))  # wall seconds of fit(), whole
    return numbers


def summarize(
    metrics: dict[str, dict[str, Any]], histories: dict[str, pd.DataFrame]
) -> dict[str, dict[str, float | int]]:
    """One entry per model, by name, in the order given; no seconds without a history (the ensemble)."""
    return {name: headline(m, histories.get(name)) for name, m in metrics.items()}
