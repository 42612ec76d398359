"""Metrics on a hand-made example whose answers are worked out by hand."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from mnist_pipeline.evaluation import CLASSES, classification_metrics


def one_hot_logits(predicted: list[int], scale: float = 10.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), 10).float() * scale


def logit_row(values: dict[int, float]) -> list[float]:
    """Ten logits: zero except at the given classes."""
    return [values.get(c, 0.0) for c in range(10)]


def test_hand_made_example() -> None:
    actual = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    predicted = [0, 1, 1, 1, 2, 2, 0, 9]  # right: 0, 1, 1, 2, 2 → 5 of 8
    metrics = classification_metrics(one_hot_logits(predicted), actual)
    assert set(metrics) == {"accuracy", "loss", "per_class_accuracy", "confusion_matrix"}
    assert metrics["accuracy"] == 0.625
    assert metrics["per_class_accuracy"]["0"] == 0.5
    assert metrics["per_class_accuracy"]["1"] == 1.0
    assert metrics["per_class_accuracy"]["2"] == round(2 / 3, 6)
    assert metrics["per_class_accuracy"]["3"] == 0.0
    assert metrics["per_class_accuracy"]["5"] == 0.0  # no images of 5: reported as 0, not an error
    cm = metrics["confusion_matrix"]
    assert len(cm) == 10 and all(len(row) == 10 for row in cm)
    assert cm[0][0] == 1 and cm[0][1] == 1 and cm[2][0] == 1 and cm[3][9] == 1 and sum(map(sum, cm)) == 8
    # Cross-entropy of a right answer with logit gap 10 over 9 zeros: log(1 + 9 e^-10).
    right, wrong = math.log(1 + 9 * math.exp(-10)), 10 + math.log(1 + 9 * math.exp(-10))
    assert math.isclose(metrics["loss"], (5 * right + 3 * wrong) / 8, rel_tol=1e-5)


def test_every_digit_is_reported_in_order_even_when_absent() -> None:
    assert CLASSES == list(range(10))
    # only digits 7 and 8 occur: every other digit still gets a row, a column and a per-class entry, quietly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics(one_hot_logits([7, 8, 8]), torch.tensor([7, 7, 8]))
    assert list(metrics["per_class_accuracy"]) == [str(c) for c in range(10)]
    assert metrics["per_class_accuracy"] == {**{str(c): 0.0 for c in range(10)}, "7": 0.5, "8": 1.0}
    expected_cm = [[0] * 10 for _ in range(10)]
    expected_cm[7][7], expected_cm[7][8], expected_cm[8][8] = 1, 1, 1
    assert metrics["confusion_matrix"] == expected_cm
    assert metrics["accuracy"] == round(2 / 3, 6) == 0.666667  # rounded to 6 digits, not 5 or 7


def test_loss_is_float32_cross_entropy_rounded_to_six_digits() -> None:
    # uniform logits: the loss is log(10) = 2.302585093 for every image
    uniform = classification_metrics(torch.zeros(3, 10), torch.tensor([0, 4, 9]))
    assert uniform["loss"] == 2.302585 and uniform["accuracy"] == round(1 / 3, 6) == 0.333333
    # bfloat16 logits are scored in float32: bf16 cross-entropy would give 0.02685546875
    logits = (
        torch.tensor([logit_row({0: 2.0, 1: 0.5, 2: -1.0}), logit_row({0: 0.3, 1: 1.7})]).bfloat16() * 3.3
    )
    labels = torch.tensor([0, 1])
    expected = F.cross_entropy(logits.float(), labels).item()
    # 0.0272325 lies on a rounding edge: its sixth digit differs between CPUs (AVX2 vs AVX-512 exp)
    assert metrics_loss(logits, labels) == round(expected, 6) == pytest.approx(0.0272325, abs=1e-6)


def metrics_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return classification_metrics(logits, labels)["loss"]
