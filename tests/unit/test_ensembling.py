"""Ensemble selection on val: temperatures, Caruana's greedy search, the combination predict shares."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnist_pipeline.ensembling import (
    ENSEMBLE_FORMAT,
    Choice,
    EnsembleFile,
    EnsembleFileError,
    Selection,
    caruana_selection,
    choose_ensemble,
    combine,
    cross_validated_errors,
    fit_temperature,
    json_digest,
    near_best_average,
)
from mnist_pipeline.errors import PipelineError


def logit_row(values: dict[int, float]) -> list[float]:
    """Ten logits: zero except at the given classes."""
    return [values.get(c, 0.0) for c in range(10)]


def equal_mix(logits: list[torch.Tensor]) -> torch.Tensor:
    """combine() with equal weights at temperature 1: the log of the mean of the members' softmaxes."""
    names = [f"m{i}" for i in range(len(logits))]
    return combine(
        dict(zip(names, logits, strict=True)), dict.fromkeys(names, 1 / len(names)), dict.fromkeys(names, 1.0)
    )


def votes(predicted: list[int], margin: float = 4.0) -> torch.Tensor:
    """(N, 10) logits that put `margin` on each image's predicted digit."""
    return F.one_hot(torch.tensor(predicted), 10).float() * margin


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 10, generator=generator) * 3
    labels = torch.multinomial((logits / 2.5).softmax(1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.03)
    assert fit_temperature(logits * 2, labels) == pytest.approx(5.0, rel=0.03)


def test_selection_starts_from_the_best_member_and_never_ends_below_it() -> None:
    labels = torch.tensor([0] * 10)
    # a: 8 right, b and c: 7 right, each wrong on other images, so that together they are 10 of 10 right
    a = votes([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    b = votes([2, 2, 2, 0, 0, 0, 0, 0, 0, 0])
    c = votes([0, 0, 0, 0, 3, 3, 3, 0, 0, 0])
    bad = votes([4] * 10)  # never right
    chosen = caruana_selection({"a": a, "b": b, "c": c, "bad": bad}, labels, rounds=5)
    assert chosen.best_member == "a" and chosen.rounds[0]["added"] == "a"
    assert chosen.rounds[0]["val_accuracy"] == pytest.approx(0.8)
    assert chosen.val_accuracy == pytest.approx(1.0)
    assert "bad" not in chosen.weights and math.isclose(sum(chosen.weights.values()), 1.0)
    assert set(chosen.weights) == {"a", "b", "c"}
    assert set(chosen.temperatures) == {"a", "b", "c", "bad"}
    assert len(chosen.rounds) == 6


def test_a_search_that_cannot_improve_keeps_the_best_member_alone() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    best = votes([0, 0, 0, 0, 1, 1, 1, 0])
    candidates = {"copy": best.clone(), "best": best}
    chosen = caruana_selection(candidates, labels, rounds=10)
    assert chosen.weights == {"best": 1.0}  # equal scores: the first name; a copy adds nothing
    assert chosen.val_accuracy == pytest.approx(7 / 8) and len(chosen.rounds) == 11
    assert caruana_selection(candidates, labels, rounds=0).weights == {"best": 1.0}


def test_members_are_added_with_replacement_and_weighted_by_rounds() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    # strong is right on 5 of 6; helper only right where strong is wrong and only flips it at weight 1/3
    strong = torch.tensor([[3.0, 0], [3.0, 0], [3.0, 0], [0, 3.0], [0, 3.0], [1.0, 0]])
    helper = torch.tensor([[0, 1.0], [0, 1.0], [0, 1.0], [1.0, 0], [1.0, 0], [0, 9.0]])
    pad = torch.full((6, 8), -20.0)
    candidates = {"strong": torch.cat([strong, pad], 1), "helper": torch.cat([helper, pad], 1)}
    chosen = caruana_selection(candidates, labels, rounds=6)
    assert chosen.best_member == "strong"
    assert chosen.weights["strong"] > chosen.weights["helper"] > 0
    assert chosen.val_accuracy == pytest.approx(1.0)
    kept = round(1 / chosen.weights["helper"])
    assert [r["added"] for r in chosen.rounds[:kept]].count("strong") == kept - 1


def test_equal_accuracy_is_decided_by_the_calibrated_loss() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1])
    # both right on the first four and wrong on the last; "sure" puts less on its mistake relative to its hits
    sure = torch.tensor([[6.0, 0], [6.0, 0], [6.0, 0], [6.0, 0], [1.0, 0]])
    unsure = torch.tensor([[1.0, 0], [1.0, 0], [1.0, 0], [1.0, 0], [6.0, 0]])
    pad = torch.full((5, 8), -20.0)
    chosen = caruana_selection(
        {"a_unsure": torch.cat([unsure, pad], 1), "b_sure": torch.cat([sure, pad], 1)}, labels, rounds=0
    )
    assert chosen.best_member == "b_sure"


def wrong_on(wrong: list[int], images: int = 40, guess: int = 1) -> torch.Tensor:
    """Logits for `images` images of digit 0 that predict `guess` on the images in `wrong`."""
    return votes([guess if i in wrong else 0 for i in range(images)])


def test_the_average_takes_every_model_within_k_val_errors_of_the_best() -> None:
    labels = torch.zeros(40, dtype=torch.long)
    candidates = {
        "best": wrong_on([0, 1]),  # 2 errors
        "near": wrong_on([2, 3, 4]),  # 3: one behind
        "edge": wrong_on([5, 6, 7, 8]),  # 4: two behind
        "far": wrong_on([9, 10, 11, 12, 13]),  # 5: three behind
    }
    chosen = near_best_average(candidates, labels, within_errors=2)
    assert chosen.rule == "near-best average" and chosen.best_member == "best"
    assert chosen.weights == {"best": 0.333333, "edge": 0.333333, "near": 0.333333}
    assert chosen.val_accuracy == pytest.approx(1.0)  # no image is wrong in two of them
    assert chosen.best_member_val_accuracy == pytest.approx(38 / 40) and chosen.rounds == []
    assert near_best_average(candidates, labels, within_errors=0).weights == {"best": 1.0}
    assert set(near_best_average(candidates, labels, within_errors=3).weights) == set(candidates)


def test_the_average_is_used_unless_caruana_makes_fewer_out_of_fold_errors() -> None:
    labels = torch.zeros(40, dtype=torch.long)
    # three near-equal models wrong on different images: on the whole of val, their average and Caruana's
    # search are right everywhere. a's two errors fall in one fold; fitted without them, a is perfect, so
    # Caruana keeps it alone and misses both, and the average does too when it is all that is within k.
    candidates = {"a": wrong_on([0, 1]), "b": wrong_on([2, 3, 4]), "c": wrong_on([5, 6, 7])}
    beat = choose_ensemble(candidates, labels, rounds=5, within_errors=3, folds=5)
    assert beat.chosen.val_errors(40) == beat.other.val_errors(40) == 0  # in sample: a tie
    assert beat.cv_errors == {"near-best average": 0, "caruana": 2}
    assert beat.chosen.rule == "near-best average" and set(beat.chosen.weights) == {"a", "b", "c"}
    assert beat.reason() == "0 out-of-fold val errors against 2"
    tie = choose_ensemble(candidates, labels, rounds=5, within_errors=2, folds=5)
    assert tie.cv_errors == {"near-best average": 2, "caruana": 2}
    assert tie.chosen.rule == "near-best average" and tie.other.rule == "caruana"
    assert tie.reason() == "2 out-of-fold val errors against 2; a tie goes to the average"
    assert tie.why == (
        "the equal average of the models within 2 val errors of the best tied Caruana's weights on val "
        "images they were not fitted to (5-fold out-of-fold val errors: 2 against 2 of 40); a tie goes to "
        "the average, which val did not tune"
    )
    # at k=0 the average is the fitted folds' best model alone, wrong where it is; Caruana adds the others
    beaten = choose_ensemble(candidates, labels, rounds=5, within_errors=0, folds=5)
    assert beaten.cv_errors == {"near-best average": 4, "caruana": 2}
    assert beaten.chosen.rule == "caruana" and beaten.other.weights == {"a": 1.0}
    assert beaten.reason() == "2 out-of-fold val errors against 4"
    assert beaten.why == (
        "Caruana's weights made fewer mistakes on val images they were not fitted to than the equal "
        "average of the near-best models (5-fold out-of-fold val errors: 2 against 4 of 40)"
    )


def test_caruanas_gain_on_the_images_it_was_fitted_to_does_not_choose_it() -> None:
    labels = torch.zeros(40, dtype=torch.long)
    # "lucky" is right, and sure, on image 0 where "a" is wrong, and wrong, unsure, on images 12 and 30;
    # elsewhere it is "a". Averaged with "a" it fixes image 0 and breaks nothing, so on the whole of val
    # Caruana's a + lucky beats the average (a alone at k=0). But image 0 alone made lucky worth adding:
    # fitted on the folds without it, Caruana keeps a alone and misses it, as the average does.
    a = wrong_on([0, 1, 2, 3])
    lucky = wrong_on([1, 2, 3])
    lucky[0] = torch.tensor(logit_row({0: 6.0}))
    lucky[[12, 30]] = torch.tensor(logit_row({1: 2.0}))
    candidates = {"a": a, "lucky": lucky}
    choice = choose_ensemble(candidates, labels, rounds=3, within_errors=0, folds=5)
    assert choice.other.rule == "caruana" and choice.other.weights == {"a": 0.5, "lucky": 0.5}
    assert choice.other.val_errors(40) == 3 < choice.chosen.val_errors(40) == 4  # in sample: Caruana
    assert choice.cv_errors == {"near-best average": 4, "caruana": 4}  # out of fold: a tie
    assert choice.chosen.rule == "near-best average" and choice.chosen.weights == {"a": 1.0}


def test_more_folds_than_a_digits_val_images_is_one_line_naming_the_fix() -> None:
    labels = torch.tensor([0] * 6 + [1] * 3)
    with pytest.raises(PipelineError) as error:
        cross_validated_errors({"a": votes(labels.tolist())}, labels, rounds=2, within_errors=0, folds=4)
    assert str(error.value) == (
        "ensemble.folds = 4 is more than val's 3 images of digit 1: each fold needs every digit (fix: lower "
        "ensemble.folds, or raise preprocess.val_size)"
    )
    assert cross_validated_errors({"a": votes(labels.tolist())}, labels, 2, 0, folds=3)["caruana"] == 0


def test_out_of_fold_errors_count_each_val_image_once() -> None:
    labels = torch.arange(50) % 10
    candidates = {"a": votes((labels + (torch.arange(50) < 7)).remainder(10).tolist())}  # wrong on 7
    errors = cross_validated_errors(candidates, labels, rounds=2, within_errors=0, folds=5)
    assert errors == {"near-best average": 7, "caruana": 7}


def test_the_chosen_ensemble_is_never_below_the_best_model_on_val() -> None:
    labels = torch.zeros(40, dtype=torch.long)
    # b and c are wrong on the same images: with a, their average is wrong where they are (2 of 3 votes)
    candidates = {"a": wrong_on([0]), "b": wrong_on([1, 2]), "c": wrong_on([1, 2])}
    choice = choose_ensemble(candidates, labels, rounds=4, within_errors=1, folds=5)
    assert choice.other.val_errors(40) == 2 > 1  # the average: worse than a alone
    assert choice.chosen.rule == "caruana" and choice.chosen.val_errors(40) <= 1


def test_combine_is_the_weighted_mean_of_the_calibrated_probabilities() -> None:
    a, b = torch.randn(4, 10), torch.randn(4, 10)
    got = combine(
        {"a": a, "b": b, "unused": torch.randn(4, 10)}, {"a": 0.25, "b": 0.75}, {"a": 2.0, "b": 0.5}
    )
    expected = (0.25 * (a / 2.0).softmax(1) + 0.75 * (b / 0.5).softmax(1)).log()
    assert torch.allclose(got, expected, atol=1e-6)


def test_fit_temperature_takes_the_inference_tensors_predict_logits_returns() -> None:
    with torch.inference_mode():
        logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    labels = logits.argmax(1)
    assert fit_temperature(logits, labels) > 0


def test_ensemble_averages_probabilities() -> None:
    # One very sure model for digit 0 against two fairly sure models for digit 1. Averaging logits would pick
    # 0 (mean logits 20/3 vs 10/3); averaging probabilities picks 1 (about 0.63 vs 0.34).
    a = torch.tensor([logit_row({0: 20.0})])
    b = torch.tensor([logit_row({1: 5.0})])
    combined = equal_mix([a, b, b])
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
    combined = equal_mix([first, second])
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
    assert torch.allclose(equal_mix([logits]), logits.log_softmax(1), atol=1e-6)


def test_ensemble_softmax_runs_in_float32() -> None:
    # bfloat16 softmax rounds the probabilities to 8 bits: off by about 1e-3 on these logits
    logits = (
        torch.tensor([logit_row({0: 2.0, 1: 0.5, 2: -1.0}), logit_row({0: 0.3, 1: 1.7})]) * 3.3
    ).bfloat16()
    combined = equal_mix([logits])
    assert combined.dtype == torch.float32
    assert torch.allclose(combined, logits.float().log_softmax(1), rtol=0, atol=1e-5)


def test_ensemble_log_probabilities_are_floored_at_1e_12() -> None:
    # exp(-200) underflows to 0 in float32: the log is clamped to log(1e-12) instead of -inf
    sure = torch.tensor([logit_row({c: -200.0 for c in range(1, 10)})])
    combined = equal_mix([sure, sure])
    assert combined[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(combined[0, 1:], torch.full((9,), math.log(1e-12)).float())


def choice() -> Choice:
    caruana = Selection(
        weights={"b": 0.75, "a": 0.25},
        temperatures={"a": 1.23456, "b": 0.5, "c": 2.0},
        val_accuracy=0.9912345678,
        val_loss=0.03,
        best_member="b",
        rounds=[
            {"added": "b", "val_accuracy": 0.9812345678, "val_loss": 0.0412345678},
            {"added": "a", "val_accuracy": 0.9912345678, "val_loss": 0.0312345678},
        ],
    )
    average = Selection(
        weights={"a": 0.5, "b": 0.5},
        temperatures=caruana.temperatures,
        val_accuracy=0.9812345678,
        val_loss=0.04,
        best_member="b",
        rule="near-best average",
    )
    return Choice(
        chosen=caruana, other=average, why="because", cv_errors={"caruana": 20, "near-best average": 25}
    )


def test_an_ensemble_file_records_the_choice_and_reads_back(tmp_path: Path) -> None:
    record = EnsembleFile.from_choice(choice(), rounds=20, within_errors=3)
    assert record == EnsembleFile(
        members={"b": 0.75, "a": 0.25},
        temperatures={"b": 0.5, "a": 1.23456},  # the members' only, in their order
        val_accuracy=0.991235,
        rule="caruana",
        method="Caruana selection with replacement on val (20 rounds) from the best model: val accuracy, "
        "ties by the cross-entropy of the temperature-calibrated average",
        why="20 out-of-fold val errors against 25",  # as metrics/ensemble.json says it
        alternative={
            "rule": "near-best average",
            "method": "equal-weight average of the temperature-calibrated models within 3 val errors of "
            "the best (b)",
            "members": {"a": 0.5, "b": 0.5},
            "val_accuracy": 0.981235,
        },
        rounds=[
            {"added": "b", "val_accuracy": 0.981235, "val_loss": 0.041235},
            {"added": "a", "val_accuracy": 0.991235, "val_loss": 0.031235},
        ],
    )
    record.save(tmp_path / "ensemble.json")
    text = (tmp_path / "ensemble.json").read_text()
    saved = json.loads(text)
    assert list(saved) == [
        "format", "members", "temperatures", "val_accuracy", "rule", "method", "why", "alternative", "rounds",
        "digest",
    ]  # fmt: skip
    assert saved["digest"] == json_digest({key: value for key, value in saved.items() if key != "digest"})
    assert saved["format"] == ENSEMBLE_FORMAT == "mnist-pipeline-ensemble/4"
    assert text == json.dumps(saved, indent=2) + "\n"
    assert EnsembleFile.load(tmp_path / "ensemble.json") == record


def test_an_average_keeps_caruanas_search_for_the_record() -> None:
    picked = choice()
    swapped = Choice(chosen=picked.other, other=picked.chosen, why="tie", cv_errors=picked.cv_errors)
    record = EnsembleFile.from_choice(swapped, rounds=20, within_errors=3)
    assert record.members == {"a": 0.5, "b": 0.5} and record.method.startswith("equal-weight average")
    assert record.rule == "near-best average" and record.alternative["rule"] == "caruana"
    assert record.alternative["method"].startswith("Caruana") and [r["added"] for r in record.rounds] == [
        "b",
        "a",
    ]


RECORD = {
    "members": {"a": 1.0},
    "temperatures": {"a": 1.0},
    "val_accuracy": 0.9,
    "rule": "r",
    "method": "m",
    "why": "w",
    "alternative": {},
    "rounds": [],
}
RERUN = "(fix: rerun the ensemble stage with `dvc repro -f ensemble`)"
FETCH = "(fix: run `dvc repro ensemble`, or fetch it with `make pull`)"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, f"not found: stage ensemble writes it {FETCH}"),
        ("{", f"is not the ensemble stage's members file: it is not JSON {FETCH}"),
        ("[1, 2]", f"is not the ensemble stage's members file {FETCH}"),
        ({"format": "mnist-pipeline-model/3"}, f"is not the ensemble stage's members file {FETCH}"),
        (
            RECORD,  # what the ensemble stage wrote before the format
            "is a file from before ensemble files had a format; "
            f"this version reads {ENSEMBLE_FORMAT} {RERUN}",
        ),
        (
            {**RECORD, "format": "mnist-pipeline-ensemble/0"},
            f"is a mnist-pipeline-ensemble/0 file; this version reads {ENSEMBLE_FORMAT} {RERUN}",
        ),
        (
            {**RECORD, "format": ENSEMBLE_FORMAT, "members": [], "val_accuracy": "high"},
            f"lacks or mistypes members, val_accuracy {RERUN}",
        ),
        (
            {**RECORD, "format": ENSEMBLE_FORMAT, "members": {}, "temperatures": {}},
            f"names no members, or members without temperatures {RERUN}",
        ),
        (
            {**RECORD, "format": ENSEMBLE_FORMAT, "temperatures": {"b": 1.0}},
            f"names no members, or members without temperatures {RERUN}",
        ),
    ],
)
def test_anything_but_an_ensemble_file_is_one_line_naming_the_fix(
    tmp_path: Path, content: str | dict | None, problem: str
) -> None:
    path = tmp_path / "ensemble.json"
    if isinstance(content, dict) and content.get("format") == ENSEMBLE_FORMAT:
        content = {**content, "digest": json_digest(content)}  # as a writer with that bug would
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(EnsembleFileError) as error:
        EnsembleFile.load(path)
    assert str(error.value) == f"{path} {problem}"


def test_an_ensemble_file_edited_after_writing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ensemble.json"
    EnsembleFile(**RECORD).save(path)
    assert EnsembleFile.load(path) == EnsembleFile(**RECORD)
    path.write_text(path.read_text().replace('"a": 1.0', '"a": 2.0', 1))
    with pytest.raises(EnsembleFileError) as error:
        EnsembleFile.load(path)
    assert str(error.value) == (
        f"{path} was changed after the ensemble stage wrote it: its contents no longer match the digest it "
        f"was written with (fix: `git checkout -- {path}`, or `dvc repro -f ensemble`)"
    )
