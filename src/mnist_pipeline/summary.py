"""Every model's headline numbers in one small metrics file, for a narrow `dvc exp show` table."""

from __future__ import annotations

from typing import Any


def headline(metrics: dict[str, Any]) -> dict[str, float | int]:
    """Test accuracy and loss, the worst digit and its accuracy: numbers a bit-identical rerun repeats."""
    per_class = metrics["per_class_accuracy"]
    worst = min(per_class, key=per_class.__getitem__)  # ties go to the lower digit
    numbers: dict[str, float | int] = {
        "acc": metrics["accuracy"],
        "loss": round(metrics["loss"], 4),
        "worst_digit": int(worst),
        "worst_acc": per_class[worst],
    }
    return numbers


def summarize(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """One entry per model, by name, in the order given."""
    return {name: headline(m) for name, m in metrics.items()}
