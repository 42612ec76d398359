"""Training path: per-image augmentation, deterministic fit, resume equal to an uninterrupted run."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnist_pipeline.artifacts import FileCheckpointer
from mnist_pipeline.inference import Preprocessing, predict_logits
from mnist_pipeline.params import ModelParams
from mnist_pipeline.training import (
    Epoch,
    augment,
    augmented_epoch,
    batch_slices,
    bf16_autocast,
    build_optimizer,
    build_scheduler,
    fit_epochs,
    preprocessing_of,
    train_one_epoch,
)

RECIPE = ModelParams(
    arch="tiny",
    optimizer="sgd",
    lr=0.05,
    batch_size=16,
    epochs=2,
    momentum=0.9,
    schedule="onecycle",
    warmup_frac=0.3,
    rotate_deg=10,
    translate_px=2,
    scale=0.1,
    norm_mean=0.5,
    norm_std=0.5,
)
Split = tuple[torch.Tensor, torch.Tensor]


class Tiny(nn.Module):
    """A model that trains in milliseconds yet has what fit() must handle: BatchNorm buffers for the EMA to
    average and Dropout draws from the global RNG that a resumed run must restore."""

    def __init__(self, batchnorm: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 16)
        self.bn = nn.BatchNorm1d(16) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.bn(self.fc1(x.flatten(1))))))


@dataclasses.dataclass
class Seen:
    x: torch.Tensor
    training: bool
    autocast: bool
    inference: bool


class Spy(nn.Module):
    """A linear model that records every input batch and the modes it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        self.seen: list[Seen] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(
            Seen(
                x.detach().clone(),
                self.training,
                torch.is_autocast_enabled("cpu"),
                torch.is_inference_mode_enabled(),
            )
        )
        return self.fc(x.flatten(1))


def make_images(n: int, seed: int = 0) -> Split:
    """n noisy images with a learnable signal: a bright bar whose row encodes the label."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label, 4:24] = 255
    return images, labels


@pytest.fixture(scope="module")
def data() -> tuple[Split, Split]:
    images, labels = make_images(64)
    return (images[:48], labels[:48]), (images[48:], labels[48:])


# --- augmentation, epochs, batches -------------------------------------------------------------------------


def reference_augment(x: torch.Tensor, recipe: ModelParams, seed: int) -> torch.Tensor:
    """The transform written pixel by pixel in float64: output pixel p samples the input at R(angle) p / zoom
    + shift, in [-1, 1] coordinates over pixel edges, bilinearly, zero outside; per image
    (angle, zoom, shift_x, shift_y) = (rotate_deg, scale, translate_px, translate_px) times u,
    u uniform in [-1, 1)."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=torch.Generator().manual_seed(seed)).double() * 2 - 1
    rows = ((2 * torch.arange(h) + 1) / h - 1).double()
    cols = ((2 * torch.arange(w) + 1) / w - 1).double()
    y_out, x_out = torch.meshgrid(rows, cols, indexing="ij")
    src = x.double()
    out = torch.zeros(n, 1, h, w, dtype=torch.float64)
    for i in range(n):
        angle = u[i, 0].item() * math.radians(recipe.rotate_deg)
        zoom = 1 + u[i, 1].item() * recipe.scale
        shift_x = u[i, 2].item() * recipe.translate_px * 2 / w
        shift_y = u[i, 3].item() * recipe.translate_px * 2 / h
        sx = (math.cos(angle) * x_out - math.sin(angle) * y_out) / zoom + shift_x
        sy = (math.sin(angle) * x_out + math.cos(angle) * y_out) / zoom + shift_y
        px, py = ((sx + 1) * w - 1) / 2, ((sy + 1) * h - 1) / 2  # pixel index coordinates
        x0, y0 = px.floor().long(), py.floor().long()
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                weight = (1 - (px - xi).abs()) * (1 - (py - yi).abs())
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                values = src[i, 0, yi.clamp(0, h - 1), xi.clamp(0, w - 1)]
                out[i, 0] += torch.where(inside, weight * values, torch.zeros_like(values))
    return out


@pytest.mark.parametrize(
    "change",
    [
        {"rotate_deg": 25.0, "translate_px": 0.0, "scale": 0.0},
        {"rotate_deg": 0.0, "translate_px": 3.0, "scale": 0.0},
        {"rotate_deg": 0.0, "translate_px": 0.0, "scale": 0.3},
        {"rotate_deg": 15.0, "translate_px": 2.5, "scale": 0.2},
    ],
)
def test_augment_matches_the_transform_written_out(change: dict[str, float]) -> None:
    recipe = dataclasses.replace(RECIPE, **change)
    # not square, so that a swapped height and width shows
    x = torch.rand(4, 1, 24, 32, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # align_corners left to its default warns on every batch
        out = augment(x, recipe, torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.allclose(out.double(), reference_augment(x, recipe, 7), rtol=0, atol=1e-5)


def test_each_image_gets_its_own_transform() -> None:
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 13:15] = 1.0  # the same vertical bar in every image
    out = augment(x, RECIPE, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert len({tuple(img.flatten().tolist()) for img in out}) == 8


def test_no_augmentation_is_the_identity() -> None:
    x = torch.rand(4, 1, 28, 28)
    plain = dataclasses.replace(RECIPE, rotate_deg=0, translate_px=0, scale=0)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    assert augment(x, plain, generator) is x
    assert torch.equal(generator.get_state(), state)  # draws nothing


@pytest.mark.parametrize(
    ("epochs", "clean", "augmented"),
    [
        (5, 2, [True, True, True, False, False]),
        (3, 0, [True, True, True]),
        (2, 2, [False, False]),
    ],
)
def test_augmented_epoch_leaves_the_last_clean_epochs(epochs: int, clean: int, augmented: list[bool]) -> None:
    recipe = dataclasses.replace(RECIPE, epochs=epochs, clean_epochs=clean)
    assert [augmented_epoch(e, recipe) for e in range(1, epochs + 1)] == augmented


@pytest.mark.parametrize("enabled", [True, False])
def test_bf16_autocast_on_the_devices_type(enabled: bool) -> None:
    a, b = torch.rand(3, 4), torch.rand(4, 2)
    with bf16_autocast(torch.device("cpu"), enabled):
        assert torch.is_autocast_enabled("cpu") is enabled
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        out = a @ b
    assert out.dtype == (torch.bfloat16 if enabled else torch.float32)
    assert bf16_autocast(torch.device("cpu"), enabled).device == "cpu"


def test_bf16_autocast_asks_for_bfloat16_where_the_default_is_float16() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without CUDA, autocast warns that it disables itself
        with bf16_autocast(torch.device("cuda"), True):
            assert torch.get_autocast_dtype("cuda") == torch.bfloat16


def test_batch_slices_drop_only_a_single_leftover() -> None:
    assert batch_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert batch_slices(9, 4) == [slice(0, 4), slice(4, 8)]
    assert batch_slices(8, 4) == [slice(0, 4), slice(4, 8)]
    assert batch_slices(5, 5) == [slice(0, 5)]
    assert batch_slices(3, 16) == [slice(0, 3)]
    assert batch_slices(2, 16) == [slice(0, 2)]
    assert batch_slices(1, 16) == []
    assert batch_slices(0, 16) == []


# --- optimizer and schedules --------------------------------------------------------------------------------


def test_sgd_takes_the_recipes_hyperparameters() -> None:
    model = nn.Linear(3, 2)
    recipe = dataclasses.replace(RECIPE, optimizer="sgd", lr=0.2, momentum=0.8, weight_decay=0.01)
    opt = build_optimizer(model, recipe)
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.2,
        0.8,
        0.01,
        False,
    )
    assert group["params"] == list(model.parameters())


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_kinds_take_lr_and_weight_decay(name: str, cls: type) -> None:
    model = nn.Linear(3, 2)
    recipe = dataclasses.replace(RECIPE, optimizer=name, lr=0.003, momentum=0.5, weight_decay=0.02)
    opt = build_optimizer(model, recipe)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (0.003, 0.02, (0.9, 0.999))
    assert group["params"] == list(model.parameters())
    # the fused kernel: its square root is the CPU's IEEE instruction, where foreach's large ones come from
    # MKL's VML and round differently per CPU (the CPU zoo test catches that end to end)
    assert group["fused"] is True


def scheduled(recipe: ModelParams, steps_per_epoch: int, steps: int) -> list[tuple[float, Any]]:
    """(lr, momentum or betas) before each of the first `steps` optimisation steps."""
    opt = build_optimizer(nn.Linear(2, 2), recipe)
    scheduler = build_scheduler(opt, recipe, steps_per_epoch)
    seen = []
    for _ in range(steps):
        group = opt.param_groups[0]
        seen.append((group["lr"], group.get("momentum", group.get("betas"))))
        opt.step()
        scheduler.step()
    return seen


def lrs(recipe: ModelParams, steps_per_epoch: int, steps: int) -> list[float]:
    return [lr for lr, _ in scheduled(recipe, steps_per_epoch, steps)]


def close(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(
        math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-12) for a, e in zip(actual, expected, strict=True)
    )


def test_constant_schedule_with_linear_warmup() -> None:
    # 2 epochs x 5 steps, 30% warmup: 3 steps at 1/3, 2/3, 3/3 of lr, then flat
    recipe = dataclasses.replace(RECIPE, lr=0.3, epochs=2, schedule="constant", warmup_frac=0.3)
    assert close(lrs(recipe, 5, 12), [0.1, 0.2, 0.3] + [0.3] * 9)
    assert close(lrs(dataclasses.replace(recipe, warmup_frac=0.0), 5, 3), [0.3] * 3)
    # 25% of 10 steps is 2.5: warmup takes the whole 2
    assert close(lrs(dataclasses.replace(recipe, warmup_frac=0.25), 5, 4), [0.15, 0.3, 0.3, 0.3])


def test_cosine_schedule_after_warmup() -> None:
    recipe = dataclasses.replace(RECIPE, lr=0.3, epochs=2, schedule="cosine", warmup_frac=0.3)
    expected = [0.1, 0.2, 0.3] + [0.3 * 0.5 * (1 + math.cos(math.pi * k / 7)) for k in range(7)]
    assert close(lrs(recipe, 5, 10), expected)
    assert close(
        lrs(dataclasses.replace(recipe, warmup_frac=0.0), 5, 11),
        [0.3 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(11)],
    )


def test_cosine_schedule_of_a_single_step() -> None:
    # one step in all: the cosine reaches 0 one step later (a period of 1 step, not 2)
    recipe = dataclasses.replace(RECIPE, lr=0.3, epochs=1, schedule="cosine", warmup_frac=0.0)
    assert close(lrs(recipe, 1, 2), [0.3, 0.0])


def test_step_schedule_every_step_epochs() -> None:
    recipe = dataclasses.replace(RECIPE, lr=0.4, epochs=4, schedule="step", step_epochs=2, gamma=0.5)
    assert close(lrs(recipe, 3, 13), [0.4] * 6 + [0.2] * 6 + [0.1])


def test_onecycle_warms_up_then_anneals() -> None:
    # 10 steps, 40% warmup (not 30%: OneCycleLR's default): cosine from lr/25 up to lr over steps 0-3, then
    # down to lr/25e4 at step 9
    recipe = dataclasses.replace(
        RECIPE, optimizer="sgd", lr=0.1, momentum=0.9, epochs=2, schedule="onecycle", warmup_frac=0.4
    )
    seen = scheduled(recipe, 5, 10)
    up = [0.1 + (0.004 - 0.1) / 2 * (1 + math.cos(math.pi * k / 3)) for k in range(3)]
    down = [0.1 + (4e-7 - 0.1) / 2 * (1 - math.cos(math.pi * k / 6)) for k in range(7)]
    assert close([lr for lr, _ in seen], up + down)
    assert close([lr for lr, _ in seen][:2], [0.004, 0.028])
    # sgd with momentum: momentum cycles the other way, from 0.95 to 0.85 and back
    assert close([m for _, m in seen][:4], [0.95, 0.925, 0.875, 0.85]) and math.isclose(seen[-1][1], 0.95)
    # the schedule covers exactly epochs x steps_per_epoch steps
    opt = build_optimizer(nn.Linear(2, 2), recipe)
    scheduler = build_scheduler(opt, recipe, 5)
    for _ in range(10):
        opt.step()
        scheduler.step()
    with pytest.raises(ValueError):
        scheduler.step()


def test_onecycle_warmup_is_at_least_one_step() -> None:
    # 4 steps and warmup_frac 0.35: 1/4 < 0.35, so the warmup phase ends 0.4 steps in
    recipe = dataclasses.replace(RECIPE, lr=0.1, epochs=1, schedule="onecycle", warmup_frac=0.35)
    down = [0.1 + (4e-7 - 0.1) / 2 * (1 - math.cos(math.pi * (k - 0.4) / 2.6)) for k in (1, 2, 3)]
    assert close(lrs(recipe, 4, 4), [0.004] + down)


@pytest.mark.parametrize("steps", range(1, 9))
def test_onecycle_runs_on_tiny_runs(steps: int) -> None:
    # a smoke-sized run can be a few steps in all;
    # OneCycleLR divided by zero when the warm-up was 1 step or less
    recipe = dataclasses.replace(
        RECIPE, optimizer="sgd", lr=0.1, momentum=0.9, epochs=1, schedule="onecycle", warmup_frac=0.2
    )
    seen = [lr for lr, _ in scheduled(recipe, steps, steps)]
    assert len(seen) == steps and all(0 < lr <= 0.1 for lr in seen)
    if steps == 1:
        assert seen == [0.1]  # the one step at the peak
    if steps == 2:  # two steps are a cycle: the warm-up starts at lr/25, the second step ends at lr/25e4
        assert close(seen, [0.004, 4e-7])
    if 0.2 * steps > 1:  # where OneCycleLR works as asked, the schedule is the recipe's, unchanged
        opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
        reference = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.2)
        expected = []
        for _ in range(steps):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
            reference.step()
        assert seen == expected


@pytest.mark.parametrize(
    ("optimizer", "momentum", "expected"),
    [
        ("sgd", 0.0, 0.0),
        ("adam", 0.9, (0.9, 0.999)),
        ("adamw", 0.0, (0.9, 0.999)),
    ],
)
def test_onecycle_cycles_momentum_only_for_sgd_with_momentum(
    optimizer: str, momentum: float, expected: Any
) -> None:
    recipe = dataclasses.replace(
        RECIPE, optimizer=optimizer, momentum=momentum, lr=0.1, epochs=2, schedule="onecycle", warmup_frac=0.3
    )
    assert [m for _, m in scheduled(recipe, 5, 4)] == [expected] * 4


# --- one epoch, prediction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True])
def test_preprocessing_of_carries_the_recipes_normalisation_and_memory_format(channels_last: bool) -> None:
    # not the defaults, so that a field left at its default or swapped shows
    recipe = dataclasses.replace(RECIPE, norm_mean=0.2, norm_std=0.3, channels_last=channels_last)
    preprocessing = preprocessing_of(recipe)
    assert preprocessing == Preprocessing(0.2, 0.3, channels_last)
    assert preprocessing.channels_last is channels_last  # a bool, saved with the model


def halve(step: int) -> float:
    return 0.5**step  # a different lr for every step, so that a skipped scheduler.step() shows


def linear_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


@pytest.mark.parametrize(("n", "augmented"), [(10, True), (9, False)])
def test_train_one_epoch_is_the_textbook_loop(n: int, augmented: bool) -> None:
    images, labels = make_images(n)
    recipe = dataclasses.replace(
        RECIPE,
        optimizer="sgd",
        lr=0.1,
        momentum=0.5,
        weight_decay=0.01,
        batch_size=4,
        label_smoothing=0.1,
        norm_mean=0.3,
        norm_std=0.7,
    )

    model = linear_model(0)
    opt = build_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, halve)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    model.eval()  # train_one_epoch switches it back
    loss, acc = train_one_epoch(
        model, opt, scheduler, images, labels, recipe, torch.Generator().manual_seed(4), ema, augmented
    )
    assert model.training

    ref = linear_model(0)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.5, weight_decay=0.01)
    ref_scheduler = torch.optim.lr_scheduler.LambdaLR(ref_opt, halve)
    generator = torch.Generator().manual_seed(4)
    order = torch.randperm(n, generator=generator)
    averaged: list[torch.Tensor] | None = None
    loss_sum, correct, seen = 0.0, 0, 0
    for start in range(0, n - 1, 4):  # n = 9: the 9th image, alone in its batch, is left out
        idx = order[start : start + 4]
        x = images[idx].unsqueeze(1).float() / 255
        if augmented:
            x = augment(x, recipe, generator)
        logits = ref((x - 0.3) / 0.7)
        batch_loss = F.cross_entropy(logits, labels[idx], label_smoothing=0.1)
        ref_opt.zero_grad()
        batch_loss.backward()
        ref_opt.step()
        ref_scheduler.step()
        params = [p.detach().clone() for p in ref.parameters()]
        averaged = (
            params if averaged is None else [0.5 * a + 0.5 * p for a, p in zip(averaged, params, strict=True)]
        )
        loss_sum += batch_loss.item() * len(idx)
        correct += int((logits.argmax(1) == labels[idx]).sum())
        seen += len(idx)
    assert seen == (10 if n == 10 else 8)
    assert math.isclose(loss, loss_sum / seen, rel_tol=1e-5) and acc == correct / seen
    assert all(
        torch.allclose(p, q, atol=1e-6) for p, q in zip(model.parameters(), ref.parameters(), strict=True)
    )
    assert averaged is not None
    assert all(
        torch.allclose(p, q, atol=1e-6) for p, q in zip(ema.module.parameters(), averaged, strict=True)
    )
    assert math.isclose(opt.param_groups[0]["lr"], 0.1 * 0.5 ** (3 if n == 10 else 2), rel_tol=1e-9)


@pytest.mark.parametrize("nhwc_bf16", [False, True])
def test_train_one_epoch_feeds_every_image_once_normalised(nhwc_bf16: bool) -> None:
    images, labels = make_images(12)
    images[:, 0, 0] = torch.arange(12, dtype=torch.uint8)  # an id in each image
    recipe = dataclasses.replace(
        RECIPE,
        batch_size=5,
        lr=0.0,
        momentum=0.0,
        norm_mean=0.25,
        norm_std=0.5,
        channels_last=nhwc_bf16,
        bf16=nhwc_bf16,
    )
    model = Spy()
    opt = build_optimizer(model, recipe)
    scheduler = build_scheduler(opt, dataclasses.replace(recipe, schedule="constant", warmup_frac=0.0), 3)
    torch.manual_seed(0)
    first = train_one_epoch(
        model, opt, scheduler, images, labels, recipe, torch.Generator().manual_seed(2), augmented=False
    )
    assert [s.x.shape[0] for s in model.seen] == [5, 5, 2]
    assert all(s.training and not s.inference and s.autocast is nhwc_bf16 for s in model.seen)
    x = torch.cat([s.x for s in model.seen])
    ids = (x[:, 0, 0, 0] * 0.5 + 0.25).mul(255).round().long()
    assert sorted(ids.tolist()) == list(range(12))
    assert torch.allclose(x, Preprocessing(0.25, 0.5, False).input(images[ids]), atol=1e-6)
    # the shuffle comes from the generator alone, not from the global RNG
    torch.manual_seed(99)
    model.seen.clear()
    second = train_one_epoch(
        model, opt, scheduler, images, labels, recipe, torch.Generator().manual_seed(2), augmented=False
    )
    assert torch.equal(torch.cat([s.x for s in model.seen]), x) and second == first


def test_train_one_epoch_augments_only_when_asked() -> None:
    images, labels = make_images(8)
    recipe = dataclasses.replace(RECIPE, batch_size=8, lr=0.0, momentum=0.0)
    model = Spy()
    opt = build_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    for augmented in (True, False):
        train_one_epoch(
            model,
            opt,
            scheduler,
            images,
            labels,
            recipe,
            torch.Generator().manual_seed(3),
            augmented=augmented,
        )
    train_one_epoch(model, opt, scheduler, images, labels, recipe, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    order = torch.randperm(8, generator=generator)
    expected = augment(images[order].unsqueeze(1).float() / 255, recipe, generator).sub(0.5).div(0.5)
    assert torch.allclose(model.seen[0].x, expected, atol=1e-6)
    assert torch.allclose(model.seen[1].x, Preprocessing(0.5, 0.5, False).input(images[order]), atol=1e-6)
    assert torch.equal(model.seen[2].x, model.seen[0].x)  # augmented unless told otherwise


# --- fit ----------------------------------------------------------------------------------------------------


class Recorder:
    """A checkpointer that starts fresh and keeps a copy of every epoch's state."""

    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        self.states.append(copy.deepcopy(state))


@dataclasses.dataclass
class FitResult:
    """fit_epochs run to the end, as train_recipe runs it (on a Tiny model rather than a registered one)."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]]
    resumed_from: int = 0  # epochs restored from a checkpoint


def run_fit(
    data: tuple[Split, Split],
    checkpointer: Any = None,
    recipe: ModelParams = RECIPE,
    seed: int = 1,
    batchnorm: bool = True,
) -> FitResult:
    torch.manual_seed(1)
    model, last, resumed = Tiny(batchnorm), None, 0
    for last in fit_epochs(
        model, recipe, data[0], data[1], seed=seed, eval_batch_size=5, checkpointer=checkpointer
    ):
        resumed += last.resumed
    if last is None:  # no epochs: the weights as built
        return FitResult({k: v.clone() for k, v in model.state_dict().items()}, 0, [])
    return FitResult(last.best_state, last.best_epoch, last.history, resumed)


def run_epochs(
    data: tuple[Split, Split], checkpointer: Any = None, recipe: ModelParams = RECIPE, batchnorm: bool = True
) -> list[Epoch]:
    """Every epoch fit_epochs yields, as run_fit would train them."""
    torch.manual_seed(1)
    return list(
        fit_epochs(
            Tiny(batchnorm), recipe, data[0], data[1], seed=1, eval_batch_size=5, checkpointer=checkpointer
        )
    )


def without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def scored_model(state: dict[str, Any]) -> nn.Module:
    """The weights that val scored at a saved epoch: the EMA's when there is one."""
    model = Tiny()
    if state["ema"] is not None:
        model.load_state_dict(
            {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
        )
    else:
        model.load_state_dict(state["model"])
    return model


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_is_deterministic_and_learns(data: tuple[Split, Split]) -> None:
    a, b = run_fit(data), run_fit(data)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert same_state(a.best_state, b.best_state)
    assert len(a.history) == 2 and a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert a.resumed_from == 0
    # the seed drives shuffling and augmentation
    other = run_fit(data, seed=2)
    assert [r["train_loss"] for r in other.history] != [r["train_loss"] for r in a.history]


@pytest.mark.parametrize(
    "recipe",
    [
        dataclasses.replace(
            RECIPE, schedule="step", gamma=0.5, step_epochs=1, lr=0.08, epochs=3, norm_mean=0.2, norm_std=0.3
        ),
        dataclasses.replace(RECIPE, ema_decay=0.5, bf16=True),
    ],
    ids=["step", "ema-bf16"],
)
def test_history_rows_report_each_epoch_as_scored(data: tuple[Split, Split], recipe: ModelParams) -> None:
    recorder = Recorder()
    epochs = run_epochs(data, recorder, recipe=recipe)
    result = FitResult(epochs[-1].best_state, epochs[-1].best_epoch, epochs[-1].history)
    # each epoch as it ends: its row, the history so far and the best so far; none restored
    assert [e.history for e in epochs] == [result.history[:n] for n in range(1, recipe.epochs + 1)]
    assert [e.row for e in epochs] == result.history and not any(e.resumed for e in epochs)
    for e in epochs:
        accs = [r["val_acc"] for r in e.history]
        assert e.best_epoch == accs.index(max(accs)) + 1
    # fit() is fit_epochs run to the end
    fitted = run_fit(data, recipe=recipe)
    assert without_seconds(fitted.history) == without_seconds(result.history)
    assert fitted.best_epoch == result.best_epoch and same_state(fitted.best_state, result.best_state)
    assert [r["epoch"] for r in result.history] == list(range(1, recipe.epochs + 1))
    for row, state in zip(result.history, recorder.states, strict=True):
        assert set(row) == {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
        assert 0 <= row["seconds"] < 60
        with bf16_autocast(torch.device("cpu"), recipe.bf16):  # val is scored as trained
            logits = predict_logits(scored_model(state), data[1][0], 5, preprocessing_of(recipe))
        assert row["val_loss"] == F.cross_entropy(logits, data[1][1]).item()
        assert row["val_acc"] == (logits.argmax(1) == data[1][1]).float().mean().item()
        assert state["history"] == result.history[: row["epoch"]]
        assert (state["ema"] is None) is (recipe.ema_decay == 0)
        assert 0 <= row["train_acc"] <= 1 and row["train_loss"] > 0
    if recipe.schedule == "step":  # the lr each epoch started with
        assert close([r["lr"] for r in result.history], [0.08, 0.04, 0.02])
    accs = [r["val_acc"] for r in result.history]
    assert result.best_epoch == accs.index(max(accs)) + 1
    assert same_state(result.best_state, scored_model(recorder.states[result.best_epoch - 1]).state_dict())
    assert recorder.states[-1]["best_epoch"] == result.best_epoch
    assert recorder.states[-1]["best_acc"] == max(accs)


def test_best_state_is_a_copy_of_the_best_epoch(data: tuple[Split, Split]) -> None:
    # a learning rate too small to change any prediction: epoch 1 stays the best, the weights still move
    recipe = dataclasses.replace(
        RECIPE, lr=1e-4, epochs=3, schedule="constant", rotate_deg=0, translate_px=0, scale=0
    )
    recorder = Recorder()
    result = run_fit(data, recorder, recipe=recipe, batchnorm=False)  # running statistics would move val
    assert [r["val_acc"] for r in result.history] == [result.history[0]["val_acc"]] * 3
    assert result.best_epoch == 1
    assert same_state(result.best_state, recorder.states[0]["model"])
    assert not torch.equal(result.best_state["fc1.weight"], recorder.states[-1]["model"]["fc1.weight"])
    assert [s["stale"] for s in recorder.states] == [0, 1, 2]


def test_no_epochs_returns_the_initial_weights(data: tuple[Split, Split]) -> None:
    recipe = dataclasses.replace(RECIPE, epochs=0, schedule="constant", warmup_frac=0.0)
    torch.manual_seed(1)
    initial = {k: v.clone() for k, v in Tiny().state_dict().items()}
    result = run_fit(data, recipe=recipe)
    assert result.history == [] and result.best_epoch == 0 and result.resumed_from == 0
    assert same_state(result.best_state, initial)


def test_an_empty_val_split_scores_nan_and_keeps_the_initial_weights(data: tuple[Split, Split]) -> None:
    # no val images: no epoch can beat another, so the best weights are the ones fit() started from
    torch.manual_seed(1)
    initial = {k: v.clone() for k, v in Tiny().state_dict().items()}
    empty = (data[1][0][:0], data[1][1][:0])
    result = run_fit((data[0], empty))
    assert len(result.history) == RECIPE.epochs
    assert all(math.isnan(r["val_acc"]) and math.isnan(r["val_loss"]) for r in result.history)
    assert result.best_epoch == 0
    assert same_state(result.best_state, initial)
    epochs = run_epochs((data[0], empty))
    assert [e.best_epoch for e in epochs] == [0] * RECIPE.epochs
    assert all(same_state(e.best_state, initial) for e in epochs)


class KilledAfter(FileCheckpointer):
    """Saves like the real checkpointer, then dies after `epochs` saves, as SIGKILL would."""

    def __init__(self, path: Path, fingerprint: str, epochs: int) -> None:
        super().__init__(path, fingerprint)
        self.left = epochs

    def save(self, state: dict[str, Any]) -> None:
        super().save(state)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_matches_an_uninterrupted_run(
    data: tuple[Split, Split], tmp_path: Path, ema_decay: float
) -> None:
    recipe = dataclasses.replace(RECIPE, ema_decay=ema_decay)
    full = run_fit(data, recipe=recipe)
    with pytest.raises(KeyboardInterrupt):
        run_fit(data, KilledAfter(tmp_path / "ck.pt", "run-1", epochs=1), recipe=recipe)
    epochs = run_epochs(data, FileCheckpointer(tmp_path / "ck.pt", "run-1"), recipe=recipe)
    resumed = FitResult(epochs[-1].best_state, epochs[-1].best_epoch, epochs[-1].history)
    # the restored epoch comes first (a live history keeps it), then one per epoch trained
    assert [e.resumed for e in epochs] == [True, False]
    assert [e.history for e in epochs] == [resumed.history[:n] for n in range(1, recipe.epochs + 1)]
    # every epoch is in the checkpoint now: fit() restores them all and trains none
    again = run_fit(data, FileCheckpointer(tmp_path / "ck.pt", "run-1"), recipe=recipe)
    assert again.resumed_from == 2 and again.history == resumed.history
    assert same_state(again.best_state, resumed.best_state)
    assert again.best_epoch == full.best_epoch
    # each restored epoch as it was: its own row, the history up to it, the checkpoint's best
    restored = run_epochs(data, FileCheckpointer(tmp_path / "ck.pt", "run-1"), recipe=recipe)
    assert [e.resumed for e in restored] == [True] * recipe.epochs
    assert [e.history for e in restored] == [resumed.history[:n] for n in range(1, recipe.epochs + 1)]
    assert [e.row for e in restored] == resumed.history
    assert [e.best_epoch for e in restored] == [full.best_epoch] * recipe.epochs
    assert same_state(full.best_state, resumed.best_state)
    assert full.best_epoch == resumed.best_epoch
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in full.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in resumed.history
    ]


def test_resume_keeps_the_early_stopping_count(data: tuple[Split, Split], tmp_path: Path) -> None:
    recipe = dataclasses.replace(RECIPE, lr=1e-9, epochs=6, patience=2, schedule="constant", warmup_frac=0.0)
    with pytest.raises(KeyboardInterrupt):
        run_fit(data, KilledAfter(tmp_path / "ck.pt", "run-1", epochs=2), recipe=recipe, batchnorm=False)
    resumed = run_fit(data, FileCheckpointer(tmp_path / "ck.pt", "run-1"), recipe=recipe, batchnorm=False)
    assert resumed.resumed_from == 2 and len(resumed.history) == 3 and resumed.best_epoch == 1


def test_checkpoint_of_other_params_is_ignored(
    data: tuple[Split, Split], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_fit(data, KilledAfter(tmp_path / "ck.pt", "run-1", epochs=1))
    fresh = run_fit(data, FileCheckpointer(tmp_path / "ck.pt", "run-2"))
    assert fresh.resumed_from == 0
    assert "made with other params, data or code" in capsys.readouterr().err


@pytest.mark.parametrize(("patience", "epochs_run"), [(0, 5), (1, 2), (2, 3)])
def test_early_stopping_on_val_accuracy(data: tuple[Split, Split], patience: int, epochs_run: int) -> None:
    # lr too small to change a prediction (and no BatchNorm statistics to move): val accuracy ties from
    # epoch 1 on, and a tie is no improvement
    recipe = dataclasses.replace(
        RECIPE, lr=1e-9, epochs=5, patience=patience, schedule="constant", warmup_frac=0.0
    )
    result = run_fit(data, recipe=recipe, batchnorm=False)
    assert len(result.history) == epochs_run and result.best_epoch == 1


def test_bf16_autocast_is_deterministic_and_keeps_float32_weights(data: tuple[Split, Split]) -> None:
    recipe = dataclasses.replace(RECIPE, bf16=True, channels_last=True)
    a, b = run_fit(data, recipe=recipe), run_fit(data, recipe=recipe)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert all(v.dtype in (torch.float32, torch.int64) for v in a.best_state.values())
    # autocast really ran: the losses differ from the float32 run's
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in run_fit(data).history]


def test_ema_weights_are_the_ones_scored_and_saved(data: tuple[Split, Split]) -> None:
    plain, averaged = run_fit(data), run_fit(data, recipe=dataclasses.replace(RECIPE, ema_decay=0.9))
    # the average does not steer training: the same steps, the same training losses
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in averaged.history]
    # but val scores, and fit returns, the averaged weights
    assert [r["val_loss"] for r in plain.history] != [r["val_loss"] for r in averaged.history]
    assert set(averaged.best_state) == set(plain.best_state)
    assert not torch.equal(averaged.best_state["fc1.weight"], plain.best_state["fc1.weight"])
    # BatchNorm statistics are averaged too, not left at their initial values
    assert not torch.equal(averaged.best_state["bn.running_mean"], torch.zeros(16))


def test_ema_averages_weights_and_batchnorm_statistics_every_step(data: tuple[Split, Split]) -> None:
    # one step per epoch, so the checkpoints show every step's weights and their average; decay 0.9 (not
    # 0.5, where two steps of EMA equal a plain mean)
    recipe = dataclasses.replace(
        RECIPE, batch_size=48, epochs=3, ema_decay=0.9, schedule="constant", warmup_frac=0.0
    )
    recorder = Recorder()
    run_fit(data, recorder, recipe=recipe)
    steps = [s["model"] for s in recorder.states]
    keys = [k for k, v in steps[0].items() if v.is_floating_point()]
    assert "bn.running_mean" in keys and "bn.running_var" in keys
    expected = {k: steps[0][k] for k in keys}  # the first update copies the weights
    for step, state in zip(steps, recorder.states, strict=True):
        if step is not steps[0]:
            expected = {k: 0.9 * expected[k] + 0.1 * step[k] for k in keys}
        for k in keys:
            assert torch.allclose(state["ema"]["module." + k], expected[k], atol=1e-6), k


def test_clean_epochs_train_the_last_epochs_unaugmented(data: tuple[Split, Split]) -> None:
    augmented = run_fit(data)
    last_clean = run_fit(data, recipe=dataclasses.replace(RECIPE, clean_epochs=1))
    losses = [r["train_loss"] for r in augmented.history]
    assert [r["train_loss"] for r in last_clean.history][:1] == losses[:1]
    assert last_clean.history[1]["train_loss"] != losses[1]
    # all epochs clean is the same run as no augmentation at all
    all_clean = run_fit(data, recipe=dataclasses.replace(RECIPE, clean_epochs=2))
    plain = run_fit(data, recipe=dataclasses.replace(RECIPE, rotate_deg=0, translate_px=0, scale=0))
    assert [r["train_loss"] for r in all_clean.history] == [r["train_loss"] for r in plain.history]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": "lamb"}, "optimizer 'lamb' is not one of: sgd, adam, adamw"),
        ({"schedule": "linear"}, "schedule 'linear' is not one of: constant, step, cosine, onecycle"),
    ],
)
def test_an_unknown_optimizer_or_schedule_is_an_error_where_it_is_built(change: dict, message: str) -> None:
    from mnist_pipeline.params import ParamsError

    recipe = dataclasses.replace(RECIPE, **change)  # past the loader, as a tool could build it
    model = nn.Linear(2, 2)
    with pytest.raises(ParamsError, match=message):
        build_scheduler(build_optimizer(model, recipe), recipe, 10)
