"""Metrics on a hand-made example whose answers are worked out by hand."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from mnist_pipeline.evaluation import CLASSES, classification_metrics, mean_softmax


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


def test_ensemble_averages_probabilities() -> None:
    # One very sure model for digit 0 against two fairly sure models for digit 1. Averaging logits would pick
    # 0 (mean logits 20/3 vs 10/3); averaging probabilities picks 1 (about 0.63 vs 0.34).
    a = torch.tensor([logit_row({0: 20.0})])
    b = torch.tensor([logit_row({1: 5.0})])
    combined = mean_softmax([a, b, b])
    assert combined.shape == (1, 10) and combined.dtype == torch.float32
    assert combined.argmax(1).item() == 1

    def softmax(row: list[float]) -> list[float]:
        total = sum(math.exp(v) for v in row)
        return [math.exp(v) / total for v in row]

    pa, pb = softmax(logit_row({0: 20.0})), softmax(logit_row({1: 5.0}))
    expected = [math.log((x + 2 * y) / 3) for x, y in zip(pa, pb, strict=True)]
    # model a gives digit 1 only e^-20 of its mass
    assert math.isclose(expected[1], math.log(2 / 3 * math.exp(5) / (math.exp(5) + 9)), abs_tol=1e-8)
    assert torch.allclose(
        combined[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6
    )
    assert math.isclose(combined.exp().sum().item(), 1.0, rel_tol=1e-6)


def test_ensemble_averages_each_image_separately() -> None:
    # two images, two models: the softmax runs over each image's ten classes, the mean over the models
    first = torch.tensor([logit_row({2: 3.0}), logit_row({})])
    second = torch.tensor([logit_row({2: 3.0}), logit_row({6: 1.0})])
    combined = mean_softmax([first, second])
    assert combined.shape == (2, 10)
    assert torch.allclose(combined[0], first[0].log_softmax(0), atol=1e-6)  # both models agree on image 0
    p6 = math.e / (math.e + 9)
    expected = [math.log((0.1 + (1 - p6) / 9) / 2)] * 10
    expected[6] = math.log((0.1 + p6) / 2)
    assert torch.allclose(
        combined[1].double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6
    )


def test_ensemble_of_one_model_is_its_log_softmax() -> None:
    logits = torch.tensor([logit_row({3: 1.5, 4: -0.5}), logit_row({9: 2.5})])
    assert torch.allclose(mean_softmax([logits]), logits.log_softmax(1), atol=1e-6)


def test_ensemble_softmax_runs_in_float32() -> None:
    # bfloat16 softmax rounds the probabilities to 8 bits: off by about 1e-3 on these logits
    logits = (
        torch.tensor([logit_row({0: 2.0, 1: 0.5, 2: -1.0}), logit_row({0: 0.3, 1: 1.7})]) * 3.3
    ).bfloat16()
    combined = mean_softmax([logits])
    assert combined.dtype == torch.float32
    assert torch.allclose(combined, logits.float().log_softmax(1), rtol=0, atol=1e-5)


def test_ensemble_log_probabilities_are_floored_at_1e_12() -> None:
    # exp(-200) underflows to 0 in float32: the log is clamped to log(1e-12) instead of -inf
    sure = torch.tensor([logit_row({c: -200.0 for c in range(1, 10)})])
    combined = mean_softmax([sure, sure])
    assert combined[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(combined[0, 1:], torch.full((9,), math.log(1e-12)).float())
