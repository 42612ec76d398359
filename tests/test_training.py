"""Training path: per-image augmentation, deterministic fit, resume equal to an uninterrupted run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mnist_pipeline.checkpoint import FileCheckpointer
from mnist_pipeline.models import build_model
from mnist_pipeline.params import ModelParams
from mnist_pipeline.training import augment, batch_slices, fit, predict_logits

RECIPE = ModelParams(arch="lenet", optimizer="sgd", lr=0.05, batch_size=16, epochs=3, momentum=0.9,
                     schedule="onecycle", warmup_frac=0.3, rotate_deg=10, translate_px=2, scale=0.1,
                     norm_mean=0.5, norm_std=0.5)


@pytest.fixture(scope="module")
def data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 10
    images = torch.randint(0, 60, (96, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels):  # a learnable signal: a bright bar whose row encodes the label
        images[i, 2 + 2 * label, 4:24] = 255
    return (images[:80], labels[:80]), (images[80:], labels[80:])


def test_each_image_gets_its_own_transform() -> None:
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 13:15] = 1.0  # the same vertical bar in every image
    out = augment(x, RECIPE, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert len({tuple(img.flatten().tolist()) for img in out}) == 8


def test_no_augmentation_is_the_identity() -> None:
    x = torch.rand(4, 1, 28, 28)
    plain = dataclasses.replace(RECIPE, rotate_deg=0, translate_px=0, scale=0)
    assert augment(x, plain, torch.Generator()) is x


def test_batch_slices_drop_only_a_single_leftover() -> None:
    assert [s.stop - s.start for s in batch_slices(10, 4)] == [4, 4, 2]
    assert [s.stop - s.start for s in batch_slices(9, 4)] == [4, 4]


def run_fit(data, checkpointer=None, recipe: ModelParams = RECIPE):
    torch.manual_seed(1)
    return fit(build_model(recipe.arch), recipe, data[0], data[1], seed=1, eval_batch_size=50,
               checkpointer=checkpointer)


def test_fit_is_deterministic_and_learns(data) -> None:
    a, b = run_fit(data), run_fit(data)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)
    assert len(a.history) == 3 and a.history[-1]["train_loss"] < a.history[0]["train_loss"]


class KilledAfter(FileCheckpointer):
    """Saves like the real checkpointer, then dies after `epochs` saves, as SIGKILL would."""

    def __init__(self, path: Path, fingerprint: str, epochs: int) -> None:
        super().__init__(path, fingerprint)
        self.left = epochs

    def save(self, state) -> None:
        super().save(state)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_matches_an_uninterrupted_run(data, tmp_path: Path, ema_decay: float) -> None:
    recipe = dataclasses.replace(RECIPE, ema_decay=ema_decay)
    full = run_fit(data, recipe=recipe)
    with pytest.raises(KeyboardInterrupt):
        run_fit(data, KilledAfter(tmp_path / "ck.pt", "run-1", epochs=1), recipe=recipe)
    resumed = run_fit(data, FileCheckpointer(tmp_path / "ck.pt", "run-1"), recipe=recipe)
    assert resumed.resumed_from == 1
    assert all(torch.equal(full.best_state[k], resumed.best_state[k]) for k in full.best_state)
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in full.history] == \
           [{k: v for k, v in r.items() if k not in drop} for r in resumed.history]


def test_checkpoint_of_other_params_is_ignored(data, tmp_path: Path, capsys) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_fit(data, KilledAfter(tmp_path / "ck.pt", "run-1", epochs=1))
    fresh = run_fit(data, FileCheckpointer(tmp_path / "ck.pt", "run-2"))
    assert fresh.resumed_from == 0
    assert "made with other params, data or code" in capsys.readouterr().err


def test_early_stopping_on_val_accuracy(data) -> None:
    recipe = dataclasses.replace(RECIPE, lr=1e-9, epochs=10, patience=2, schedule="constant")
    result = run_fit(data, recipe=recipe)
    assert len(result.history) < 10 and result.best_epoch == len(result.history) - 2


def test_predict_logits_batches_agree_with_one_pass(data) -> None:
    model = build_model("lenet")
    images = data[1][0]
    whole = predict_logits(model, images, 1000, 0.5, 0.5, False)
    batched = predict_logits(model, images, 3, 0.5, 0.5, True)
    assert whole.shape == (16, 10) and torch.allclose(whole, batched, atol=1e-5)


def test_bf16_autocast_is_deterministic_and_keeps_float32_weights(data) -> None:
    recipe = dataclasses.replace(RECIPE, bf16=True, channels_last=True)
    a, b = run_fit(data, recipe=recipe), run_fit(data, recipe=recipe)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert all(v.dtype in (torch.float32, torch.int64) for v in a.best_state.values())
    # autocast really ran: the losses differ from the float32 run's
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in run_fit(data).history]


def test_ema_weights_are_the_ones_scored_and_saved(data) -> None:
    plain, averaged = run_fit(data), run_fit(data, recipe=dataclasses.replace(RECIPE, ema_decay=0.9))
    # the average does not steer training: the same steps, the same training losses
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in averaged.history]
    # but val scores, and fit returns, the averaged weights
    assert [r["val_loss"] for r in plain.history] != [r["val_loss"] for r in averaged.history]
    assert set(averaged.best_state) == set(plain.best_state)
    assert not torch.equal(averaged.best_state["fc1.weight"], plain.best_state["fc1.weight"])


def test_clean_epochs_train_the_last_epochs_unaugmented(data) -> None:
    augmented = run_fit(data)
    last_clean = run_fit(data, recipe=dataclasses.replace(RECIPE, clean_epochs=1))
    losses = [r["train_loss"] for r in augmented.history]
    assert [r["train_loss"] for r in last_clean.history][:2] == losses[:2]
    assert last_clean.history[2]["train_loss"] != losses[2]
    # all epochs clean is the same run as no augmentation at all
    all_clean = run_fit(data, recipe=dataclasses.replace(RECIPE, clean_epochs=3))
    plain = run_fit(data, recipe=dataclasses.replace(RECIPE, rotate_deg=0, translate_px=0, scale=0))
    assert [r["train_loss"] for r in all_clean.history] == [r["train_loss"] for r in plain.history]
