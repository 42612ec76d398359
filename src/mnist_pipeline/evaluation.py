"""Metrics from logits: overall and per-class accuracy, loss, scikit-learn confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

CLASSES = list(range(10))  # the digits


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class accuracy (recall), 10x10 confusion matrix (rows: actual)."""
    predicted = logits.argmax(1).numpy()
    actual = labels.numpy()
    per_class = recall_score(actual, predicted, labels=CLASSES, average=None, zero_division=0.0)
    return {
        "accuracy": round(float(accuracy_score(actual, predicted)), 6),
        "loss": round(F.cross_entropy(logits.float(), labels).item(), 6),
        "per_class_accuracy": {str(c): round(float(a), 6) for c, a in zip(CLASSES, per_class, strict=True)},
        "confusion_matrix": confusion_matrix(actual, predicted, labels=CLASSES).tolist(),
    }
