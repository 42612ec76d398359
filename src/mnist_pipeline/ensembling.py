"""Ensemble selection on val: temperature-calibrated members, two rules (the equal-weight average of the
models near the best, and Caruana's greedy selection with replacement), the choice between them by
out-of-fold val errors, and the file that records it (models/ensemble.json)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import write_json
from mnist_pipeline.inference import rank, score

ENSEMBLE_FORMAT = "mnist-pipeline-ensemble/4"  # /3: its digest; /4: rule and why as metrics/ensemble.json


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 that minimises the cross-entropy of softmax(logits / T) on these labels.

    Label smoothing and test-time shifts leave members over- or under-confident by different amounts;
    dividing by T changes no member's own predictions, only how much each counts in an average.
    """
    # float64: in float32 the line search's path, and the 4th decimal of T, followed 1-ulp differences
    # between CPUs on near-uniform logits (the CPU zoo's cnn6: T 0.1160 on a Zen 2, 0.1161 on an emulated
    # EPYC Milan)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")
    logits = logits.double()  # a normal tensor: autograd refuses predict_logits' inference tensors

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


def fit_temperatures(val_logits: dict[str, torch.Tensor], val_labels: torch.Tensor) -> dict[str, float]:
    """Every candidate's temperature on val, in name order."""
    return {name: fit_temperature(val_logits[name], val_labels) for name in sorted(val_logits)}


@dataclass(frozen=True)
class Selection:
    """An ensemble chosen on val by one rule: members with weights (and, for Caruana, each round)."""

    weights: dict[str, float]  # member → share of the average; the weights sum to 1
    temperatures: dict[str, float]  # every candidate's fitted temperature
    val_accuracy: float
    val_loss: float  # cross-entropy of the calibrated weighted average
    best_member: str  # the best single candidate on val
    rounds: list[dict[str, float | str]] = field(default_factory=list)  # added, val_accuracy, val_loss
    rule: str = "caruana"  # "caruana" or "near-best average"
    best_member_val_accuracy: float = 0.0

    def val_errors(self, images: int) -> int:
        """Val images the ensemble gets wrong."""
        return errors_of(self.val_accuracy, images)


def errors_of(accuracy: float, images: int) -> int:
    """Images wrong at this accuracy over `images` (an accuracy is a count of images, up to float noise)."""
    return round((1 - accuracy) * images)


def _best_single(
    probs: dict[str, torch.Tensor], val_labels: torch.Tensor
) -> tuple[str, dict[str, tuple[float, float]]]:
    """The best candidate (val accuracy, then calibrated cross-entropy; name order among equals), and
    every candidate's (accuracy, loss)."""
    singles = {name: _score(probs[name].clamp_min(1e-12).log(), val_labels) for name in sorted(probs)}
    return max(singles, key=lambda name: rank(*singles[name])), singles


def near_best_average(
    val_logits: dict[str, torch.Tensor],
    val_labels: torch.Tensor,
    within_errors: int,
    temperatures: dict[str, float] | None = None,
) -> Selection:
    """The equal-weight average of every candidate at most `within_errors` val errors behind the best.

    At 5,000 val images, models a few errors apart are not told apart by val; an average of all of
    them has nothing fitted to val but the membership, so it is the robust choice when val ties.
    """
    temperatures = temperatures or fit_temperatures(val_logits, val_labels)
    probs = {name: calibrated_probs(val_logits[name], temperatures[name]) for name in sorted(val_logits)}
    best, singles = _best_single(probs, val_labels)
    images = len(val_labels)
    limit = errors_of(singles[best][0], images) + within_errors
    members = [name for name in probs if errors_of(singles[name][0], images) <= limit]
    weights = {name: round(1 / len(members), 6) for name in members}
    accuracy, loss = _score(weighted_log_probs(probs, dict.fromkeys(members, 1 / len(members))), val_labels)
    return Selection(
        weights=weights,
        temperatures=temperatures,
        val_accuracy=accuracy,
        val_loss=loss,
        best_member=best,
        rule="near-best average",
        best_member_val_accuracy=singles[best][0],
    )


def caruana_selection(
    val_logits: dict[str, torch.Tensor],
    val_labels: torch.Tensor,
    rounds: int,
    temperatures: dict[str, float] | None = None,
) -> Selection:
    """Caruana et al. (ICML 2004) ensemble selection, scored on val: never worse than the best member there.

    Each candidate is temperature-calibrated on val. The search starts from the best single candidate
    (val accuracy, ties broken by calibrated cross-entropy), then for `rounds` rounds adds, with
    replacement, the candidate whose inclusion scores best by the same order; it keeps the best
    ensemble seen, the earliest among equals. A member's weight is its share of the kept rounds.
    """
    names = sorted(val_logits)
    temperatures = temperatures or fit_temperatures(val_logits, val_labels)
    probs = {name: calibrated_probs(val_logits[name], temperatures[name]) for name in names}

    first, singles = _best_single(probs, val_labels)
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
        chosen = max(names, key=lambda name: rank(*trials[name]))
        picked.append(chosen)
        total += probs[chosen]
        log_rounds.append({"added": chosen, "val_accuracy": trials[chosen][0], "val_loss": trials[chosen][1]})
        if rank(*trials[chosen]) > rank(*best_score):
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
        best_member_val_accuracy=singles[first][0],
    )


@dataclass(frozen=True)
class Choice:
    """The ensemble the stage uses, the rule it lost to or beat, both rules' out-of-fold errors, and why."""

    chosen: Selection
    other: Selection
    why: str
    cv_errors: dict[str, int]  # rule → out-of-fold val errors

    def reason(self) -> str:
        """The why in a few words, for metrics/ensemble.json (which `dvc metrics diff` prints whole)."""
        ours, theirs = self.cv_errors[self.chosen.rule], self.cv_errors[self.other.rule]
        tie = "; a tie goes to the average" if ours == theirs else ""
        return f"{ours} out-of-fold val errors against {theirs}{tie}"


def cross_validated_errors(
    val_logits: dict[str, torch.Tensor], val_labels: torch.Tensor, rounds: int, within_errors: int, folds: int
) -> dict[str, int]:
    """Each rule's out-of-fold val errors: on each of `folds` stratified folds of val, the rule fits its
    temperatures, members and weights on the other folds, and the held-out fold counts its mistakes.

    Scored on the images it was fitted to, Caruana's search flatters itself: it beat the average there in
    all 18 allocations of docs/frontier.md, by 2-6 errors. Out of fold, both rules meet images they never
    saw, as test's will be.
    """
    classes, counts = val_labels.unique(return_counts=True)
    fewest, digit = int(counts.min()), int(classes[counts.argmin()])
    if folds > fewest:  # scikit-learn would only warn, and leave that digit out of some folds
        raise PipelineError(
            f"ensemble.folds = {folds} is more than val's {fewest} images of digit {digit}: each fold needs "
            "every digit (fix: lower ensemble.folds, or raise preprocess.val_size)"
        )
    # a fixed shuffle: the val split itself moves with the top-level seed
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    errors = {"near-best average": 0, "caruana": 0}
    for fit, held in splitter.split(np.zeros(len(val_labels)), val_labels.numpy()):
        fit, held = torch.from_numpy(fit), torch.from_numpy(held)
        fitted = {name: logits[fit] for name, logits in val_logits.items()}
        temperatures = fit_temperatures(fitted, val_labels[fit])
        for selection in (
            near_best_average(fitted, val_labels[fit], within_errors, temperatures),
            caruana_selection(fitted, val_labels[fit], rounds, temperatures),
        ):
            held_out = {name: val_logits[name][held] for name in selection.weights}
            predicted = combine(held_out, selection.weights, temperatures).argmax(1)
            errors[selection.rule] += int((predicted != val_labels[held]).sum())
    return errors


def choose_ensemble(
    val_logits: dict[str, torch.Tensor], val_labels: torch.Tensor, rounds: int, within_errors: int, folds: int
) -> Choice:
    """The near-best average, unless Caruana's weights make fewer out-of-fold val errors.

    Both rules are then fitted on the whole of val. A tie goes to the average, which val did not tune:
    a weighted search must show on images it was not fitted to that it beats the average before it is used.
    """
    temperatures = fit_temperatures(val_logits, val_labels)
    average = near_best_average(val_logits, val_labels, within_errors, temperatures)
    caruana = caruana_selection(val_logits, val_labels, rounds, temperatures)
    errors = cross_validated_errors(val_logits, val_labels, rounds, within_errors, folds)
    ours, theirs = errors["caruana"], errors["near-best average"]

    def counts(first: int, second: int) -> str:
        return f"{folds}-fold out-of-fold val errors: {first} against {second} of {len(val_labels):,}"

    if ours < theirs:
        why = (
            "Caruana's weights made fewer mistakes on val images they were not fitted to than the equal "
            f"average of the near-best models ({counts(ours, theirs)})"
        )
        return Choice(chosen=caruana, other=average, why=why, cv_errors=errors)
    why = (
        f"the equal average of the models within {within_errors} val errors of the best "
        f"{'tied' if ours == theirs else 'beat'} Caruana's weights on val images they were not fitted to "
        f"({counts(theirs, ours)}); a tie goes to the average, which val did not tune"
    )
    return Choice(chosen=average, other=caruana, why=why, cv_errors=errors)


def json_digest(saved: dict[str, Any]) -> str:
    """sha256 of a JSON record, keys sorted: what the ensemble file carries to check itself on load."""
    return hashlib.sha256(json.dumps(saved, sort_keys=True).encode()).hexdigest()


class EnsembleFileError(PipelineError):
    """A file that is not the ensemble stage's record, or not one this version reads."""


_FIX = "(fix: run `dvc repro ensemble`, or fetch it with `make pull`)"


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from path; a missing file or other content is an EnsembleFileError."""
    try:
        with path.open() as f:
            saved = json.load(f)
    except FileNotFoundError:
        raise EnsembleFileError(f"{path} not found: stage ensemble writes it {_FIX}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EnsembleFileError(
            f"{path} is not the ensemble stage's members file: it is not JSON {_FIX}"
        ) from None
    if not isinstance(saved, dict):
        raise EnsembleFileError(f"{path} is not the ensemble stage's members file {_FIX}")
    return saved


# The fields of an ensemble file and the type each must have.
_FIELDS: dict[str, type] = {
    "members": dict,
    "temperatures": dict,
    "val_accuracy": float,
    "rule": str,
    "method": str,
    "why": str,
    "alternative": dict,
    "rounds": list,
}


def method_text(selection: Selection, rounds: int, within_errors: int) -> str:
    """How a selection's members were chosen, in words."""
    if selection.rule == "caruana":
        return (
            f"Caruana selection with replacement on val ({rounds} rounds) from the best model: val "
            "accuracy, ties by the cross-entropy of the temperature-calibrated average"
        )
    return (
        f"equal-weight average of the temperature-calibrated models within {within_errors} val errors "
        f"of the best ({selection.best_member})"
    )


@dataclass(frozen=True)
class EnsembleFile:
    """The ensemble the stage chose on val, as one JSON file: what `predict --ensemble` combines."""

    members: dict[str, float]  # member → weight; the weights sum to 1
    temperatures: dict[str, float]  # member → the temperature its logits are divided by
    val_accuracy: float
    rule: str  # "caruana" or "near-best average", as metrics/ensemble.json names it
    method: str  # how that rule chose the members, in words
    why: str  # why this rule and not the other: both out-of-fold val error counts, as in the metrics
    alternative: dict[str, Any]  # the rule not used: rule, method, members, val_accuracy
    rounds: list[dict[str, float | str]]  # Caruana's search, for the record: what each round added, val after

    @classmethod
    def from_choice(cls, choice: Choice, rounds: int, within_errors: int) -> EnsembleFile:
        """The record of a choose_ensemble() call, its scores rounded to 6 digits."""
        chosen, other = choice.chosen, choice.other
        search = chosen if chosen.rule == "caruana" else other
        return cls(
            members=chosen.weights,
            temperatures={name: chosen.temperatures[name] for name in chosen.weights},
            val_accuracy=round(chosen.val_accuracy, 6),
            rule=chosen.rule,
            method=method_text(chosen, rounds, within_errors),
            why=choice.reason(),
            alternative={
                "rule": other.rule,
                "method": method_text(other, rounds, within_errors),
                "members": other.weights,
                "val_accuracy": round(other.val_accuracy, 6),
            },
            rounds=[
                {**r, "val_accuracy": round(r["val_accuracy"], 6), "val_loss": round(r["val_loss"], 6)}
                for r in search.rounds
            ],
        )

    def save(self, path: Path) -> None:
        """Write the file atomically, its format first and the digest of its contents last."""
        saved = {"format": ENSEMBLE_FORMAT, **dataclasses.asdict(self)}
        write_json(Path(path), {**saved, "digest": json_digest(saved)})

    @classmethod
    def load(cls, path: Path) -> EnsembleFile:
        """Read a file that save() wrote; anything else is an EnsembleFileError naming the fix."""
        path = Path(path)
        saved = _read_json(path)
        rerun = "(fix: rerun the ensemble stage with `dvc repro -f ensemble`)"
        found = saved.get("format")
        if found != ENSEMBLE_FORMAT:
            if not str(found).startswith("mnist-pipeline-ensemble/") and "members" not in saved:
                raise EnsembleFileError(f"{path} is not the ensemble stage's members file {_FIX}")
            written = f"a {found} file" if found else "a file from before ensemble files had a format"
            raise EnsembleFileError(f"{path} is {written}; this version reads {ENSEMBLE_FORMAT} {rerun}")
        wrong = [key for key, kind in _FIELDS.items() if not isinstance(saved.get(key), kind)]
        if wrong:
            raise EnsembleFileError(f"{path} lacks or mistypes {', '.join(wrong)} {rerun}")
        if json_digest({key: value for key, value in saved.items() if key != "digest"}) != saved.get(
            "digest"
        ):
            raise EnsembleFileError(
                f"{path} was changed after the ensemble stage wrote it: its contents no longer match the "
                f"digest it was written with (fix: `git checkout -- {path}`, or `dvc repro -f ensemble`)"
            )
        if not saved["members"] or set(saved["members"]) != set(saved["temperatures"]):
            raise EnsembleFileError(f"{path} names no members, or members without temperatures {rerun}")
        return cls(**{key: saved[key] for key in _FIELDS})
