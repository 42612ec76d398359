"""Metrics on a hand-made example whose answers are worked out by hand."""

from __future__ import annotations

import math

import torch

from mnist_pipeline.evaluation import classification_metrics, mean_softmax


def one_hot_logits(predicted: list[int], scale: float = 10.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), 10).float() * scale


def test_hand_made_example() -> None:
    actual = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    predicted = [0, 1, 1, 1, 2, 2, 0, 9]  # right: 0, 1, 1, 2, 2 → 5 of 8
    metrics = classification_metrics(one_hot_logits(predicted), actual)
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


def test_ensemble_averages_probabilities() -> None:
    a = one_hot_logits([3], scale=2.0)
    b = one_hot_logits([5], scale=8.0)
    combined = mean_softmax([a, b])
    assert combined.argmax(1).item() == 5
    assert math.isclose(combined.exp().sum().item(), 1.0, rel_tol=1e-6)
