"""Ensemble selection on val: temperature-calibrated members, Caruana's greedy selection with replacement."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mnist_pipeline.inference import score


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 that minimises the cross-entropy of softmax(logits / T) on these labels.

    Label smoothing and test-time shifts leave members over- or under-confident by different amounts;
    dividing by T changes no member's own predictions, only how much each counts in an average.
    """
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")
    logits = logits.float().clone()  # a normal tensor: autograd refuses predict_logits' inference tensors

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return round(log_t.exp().item(), 4)  # rounded: the chosen value is a recorded result


def calibrated_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, 10) probabilities softmax(logits / temperature)."""
    return (logits.float() / temperature).softmax(1)


def weighted_log_probs(probs: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """(N, 10) log of the weighted mean of the members' probabilities; weights sum to 1."""
    mixed = sum(probs[name] * weight for name, weight in weights.items())
    return mixed.clamp_min(1e-12).log()


def combine(
    logits: dict[str, torch.Tensor], weights: dict[str, float], temperatures: dict[str, float]
) -> torch.Tensor:
    """(N, 10) ensemble log-probabilities: the weighted mean of each member's calibrated softmax."""
    return weighted_log_probs(
        {name: calibrated_probs(logits[name], temperatures[name]) for name in weights}, weights
    )


def _score(log_probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(accuracy, cross-entropy) of log-probabilities: what selection maximises, then minimises."""
    scored = score(log_probs, labels)
    return scored["accuracy"], scored["loss"]


@dataclass(frozen=True)
class Selection:
    """The ensemble chosen on val: members with weights, and how each round of the search went."""

    weights: dict[str, float]  # member → share of the average (rounds picked / rounds kept)
    temperatures: dict[str, float]  # every candidate's fitted temperature
    val_accuracy: float
    val_loss: float  # cross-entropy of the calibrated weighted average
    best_member: str  # the best single candidate on val, where the search starts
    rounds: list[dict[str, float | str]] = field(default_factory=list)  # added, val_accuracy, val_loss


def caruana_selection(
    val_logits: dict[str, torch.Tensor], val_labels: torch.Tensor, rounds: int
) -> Selection:
    """Caruana et al. (ICML 2004) ensemble selection, scored on val: never worse than the best member there.

    Each candidate is temperature-calibrated on val. The search starts from the best single candidate
    (val accuracy, ties broken by calibrated cross-entropy), then for `rounds` rounds adds, with
    replacement, the candidate whose inclusion scores best by the same order; it keeps the best
    ensemble seen, the earliest among equals. A member's weight is its share of the kept rounds.
    """
    names = sorted(val_logits)
    temperatures = {name: fit_temperature(val_logits[name], val_labels) for name in names}
    probs = {name: calibrated_probs(val_logits[name], temperatures[name]) for name in names}

    def order(score: tuple[float, float]) -> tuple[float, float]:
        return (score[0], -score[1])  # higher accuracy, then lower loss

    singles = {name: _score(probs[name].clamp_min(1e-12).log(), val_labels) for name in names}
    first = max(names, key=lambda name: order(singles[name]))  # max keeps the first of equals: name order
    picked = [first]
    total = probs[first].clone()
    log_rounds: list[dict[str, float | str]] = [
        {"added": first, "val_accuracy": singles[first][0], "val_loss": singles[first][1]}
    ]
    best_score, best_count = singles[first], 1
    for _ in range(rounds):
        count = len(picked) + 1
        trials = {
            name: _score(((total + probs[name]) / count).clamp_min(1e-12).log(), val_labels) for name in names
        }
        chosen = max(names, key=lambda name: order(trials[name]))
        picked.append(chosen)
        total += probs[chosen]
        log_rounds.append({"added": chosen, "val_accuracy": trials[chosen][0], "val_loss": trials[chosen][1]})
        if order(trials[chosen]) > order(best_score):
            best_score, best_count = trials[chosen], count
    kept = picked[:best_count]
    weights = {name: round(kept.count(name) / best_count, 6) for name in names if name in kept}
    return Selection(
        weights=weights,
        temperatures=temperatures,
        val_accuracy=best_score[0],
        val_loss=best_score[1],
        best_member=first,
        rounds=log_rounds,
    )
