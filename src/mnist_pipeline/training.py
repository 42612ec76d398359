"""Tensor-resident training: batches by indexing a seeded permutation, whole-batch augmentation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnist_pipeline.inference import Preprocessing, choose_test_shifts, predict_logits, score
from mnist_pipeline.models import build_model
from mnist_pipeline.params import OPTIMIZERS, SCHEDULES, ModelParams, ParamsError
from mnist_pipeline.progress import Advance, Progress, no_progress


def preprocessing_of(recipe: ModelParams) -> Preprocessing:
    """The input preprocessing and memory format a recipe trains with, saved with its model."""
    return Preprocessing(mean=recipe.norm_mean, std=recipe.norm_std, channels_last=recipe.channels_last)


def augment(x: torch.Tensor, recipe: ModelParams, generator: torch.Generator) -> torch.Tensor:
    """Give each image of (B, 1, H, W) float in [0, 1] its own random rotation, shift and zoom."""
    if not (recipe.rotate_deg or recipe.translate_px or recipe.scale):
        return x
    n, _, h, w = x.shape
    u = (torch.rand(n, 4, generator=generator) * 2 - 1).to(x.device)  # uniform in [-1, 1)
    angle = u[:, 0] * math.radians(recipe.rotate_deg)
    zoom = 1 + u[:, 1] * recipe.scale
    shift_x = u[:, 2] * recipe.translate_px * 2 / w  # affine_grid works in [-1, 1] coordinates
    shift_y = u[:, 3] * recipe.translate_px * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augmented_epoch(epoch: int, recipe: ModelParams) -> bool:
    """Whether 1-based epoch trains on augmented images: all but the recipe's last clean_epochs do."""
    return epoch <= recipe.epochs - recipe.clean_epochs


def bf16_autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on the device's type when a recipe asks for it; a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Batch boundaries over n items; a trailing batch of one is dropped (BatchNorm cannot train on it)."""
    return [
        slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size) if min(i + batch_size, n) - i >= 2
    ]


def build_optimizer(model: nn.Module, recipe: ModelParams) -> torch.optim.Optimizer:
    """The recipe's optimizer over all model parameters."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            nesterov=False,
        )
    # fused: one ATen kernel per step whose square root is the CPU's IEEE instruction. The default
    # (foreach) path takes large float32 square roots from MKL's VML, which rounds 1 ulp differently in
    # ~16% of elements depending on the CPU, whatever numerics mode (docs/results.md: the CPU zoo).
    adams = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if recipe.optimizer not in adams:  # a ModelParams made by hand, past the loader's checks, lands here
        raise ParamsError(f"optimizer {recipe.optimizer!r} is not one of: {', '.join(OPTIMIZERS)}")
    return adams[recipe.optimizer](
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True
    )


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: ModelParams, steps_per_epoch: int) -> Any:
    """A per-step learning-rate schedule for the whole run of recipe.epochs epochs."""
    if recipe.schedule not in SCHEDULES:
        raise ParamsError(f"schedule {recipe.schedule!r} is not one of: {', '.join(SCHEDULES)}")
    total = recipe.epochs * steps_per_epoch
    warmup = int(recipe.warmup_frac * total)
    if recipe.schedule == "onecycle":
        if total < 2:  # OneCycleLR needs a step up and a step down: a single step trains at the peak lr
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        # OneCycleLR divides by its warm-up length, pct_start * total - 1 steps: keep it above 0 on tiny runs
        pct_start = recipe.warmup_frac if recipe.warmup_frac * total > 1 else 1.5 / total
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=recipe.lr,
            total_steps=total,
            pct_start=pct_start,
            cycle_momentum=recipe.optimizer == "sgd" and recipe.momentum > 0,
        )
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=recipe.step_epochs * steps_per_epoch, gamma=recipe.gamma
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if recipe.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: ModelParams,
    generator: torch.Generator,
    ema: AveragedModel | None = None,
    augmented: bool = True,
    advance: Advance | None = None,
) -> tuple[float, float]:
    """One pass over the training images in a seeded random order, one optimiser and schedule step per batch.

    Args:
        model: the model in training, on the device that holds images and labels.
        optimizer: steps the model's parameters once per batch.
        scheduler: steps the learning rate once per batch.
        images: (N, 28, 28) uint8 training images.
        labels: (N,) int64 digits.
        recipe: batch size, augmentation, preprocessing, label smoothing and bf16 autocast.
        generator: draws the order and the augmentation; its state advances.
        ema: a weight average to update after every step, or None.
        augmented: whether this epoch's images get the recipe's random rotation, shift and zoom.
        advance: told the number of images after each step (a progress bar), or None.

    Returns:
        The mean training loss and the accuracy over the epoch's batches, as seen while training.
    """
    model.train()
    device = images.device
    preprocessing = preprocessing_of(recipe)
    order = torch.randperm(len(images), generator=generator).to(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    for part in batch_slices(len(images), recipe.batch_size):
        idx = order[part]
        x = images[idx].unsqueeze(1).float().div_(255.0)
        if augmented:
            x = augment(x, recipe, generator)
        x = preprocessing.normalise(x)
        y = labels[idx]
        with bf16_autocast(device, recipe.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        # Accumulate on the device: a .item() per batch would synchronise every step.
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y).sum()
        seen += len(idx)
        if advance is not None:
            advance(len(idx))
    return loss_sum.item() / seen, correct.item() / seen


class Checkpointer(Protocol):
    """Where fit_epochs keeps its per-epoch state so that a killed run can resume."""

    def load(self) -> dict[str, Any] | None: ...
    def save(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Epoch:
    """One epoch of a fit, as fit_epochs yields it: its history row and the best weights so far."""

    row: dict[str, float]  # epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds (wall, train + val)
    history: list[dict[str, float]]  # every row up to and including this one
    best_state: dict[str, torch.Tensor]  # the weights with the best val accuracy so far, on the CPU
    best_epoch: int
    resumed: bool  # restored from the checkpoint rather than trained by this call


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit_epochs(
    model: nn.Module,
    recipe: ModelParams,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    eval_batch_size: int,
    checkpointer: Checkpointer | None = None,
    progress: Progress = no_progress,
) -> Iterator[Epoch]:
    """Train epoch by epoch, scoring val after each; yield each epoch (an Epoch) as it ends.

    Training runs for up to recipe.epochs and stops early once val accuracy has not improved for
    recipe.patience epochs. The scored weights (the EMA average when the recipe keeps one) with the
    best val accuracy are kept. Epochs restored from the checkpointer are yielded first, marked
    resumed, each with the checkpoint's best weights.

    Args:
        model: a freshly built (seeded) model in the recipe's memory format, on the training device.
        recipe: the model's section of params.yaml.
        train_data: (N, 28, 28) uint8 images and (N,) int64 labels, moved to the model's device once.
        val_data: the same for the val split; an empty split scores as NaN.
        seed: seeds the batch order and the augmentation.
        eval_batch_size: images per forward pass when scoring val.
        checkpointer: where each epoch's state is saved and a killed run's state is restored, or None.
        progress: shown each epoch's images as they train (progress.progress_to for a bar or log lines).
    """
    device = next(model.parameters()).device
    train_images, train_labels = (t.to(device) for t in train_data)  # moved to the device once
    val_images = val_data[0].to(device)  # scored after every epoch: moved once too
    preprocessing = preprocessing_of(recipe)
    batches = batch_slices(len(train_images), recipe.batch_size)
    run = _Run.start(model, recipe, seed, len(batches))
    saved = checkpointer.load() if checkpointer else None
    if saved is not None:
        run.restore(saved)
        for done, row in enumerate(run.history, 1):
            yield Epoch(row, run.history[:done], run.best_state, run.best_epoch, resumed=True)

    for epoch in range(len(run.history) + 1, recipe.epochs + 1):
        if recipe.patience and run.stale >= recipe.patience:
            break
        start = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        with progress(f"epoch {epoch}/{recipe.epochs}", sum(p.stop - p.start for p in batches)) as advance:
            train_loss, train_acc = run.train_epoch(train_images, train_labels, epoch, advance)
        with bf16_autocast(device, recipe.bf16):  # val as trained: half the time
            logits = predict_logits(run.scored, val_images, eval_batch_size, preprocessing)
        val = score(logits, val_data[1])  # in float32, outside autocast
        run.keep_if_best(epoch, val["accuracy"])
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc}
        run.history.append(row | {"val_loss": val["loss"], "val_acc": val["accuracy"], "seconds": seconds})
        if checkpointer:
            checkpointer.save(run.state())
        yield Epoch(run.history[-1], list(run.history), run.best_state, run.best_epoch, resumed=False)


@dataclass
class _Run:
    """What fit_epochs carries from one epoch to the next, and what a checkpoint holds to resume it."""

    model: nn.Module
    recipe: ModelParams
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: AveragedModel | None
    generator: torch.Generator  # shuffling and augmentation
    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_acc: float = -1.0
    stale: int = 0  # epochs since val accuracy last improved

    @classmethod
    def start(cls, model: nn.Module, recipe: ModelParams, seed: int, steps_per_epoch: int) -> _Run:
        generator = torch.Generator().manual_seed(seed)
        optimizer = build_optimizer(model, recipe)
        scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
        ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
            if recipe.ema_decay
            else None
        )
        return cls(model, recipe, optimizer, scheduler, ema, generator, _clone_state(model))

    def train_epoch(
        self, images: torch.Tensor, labels: torch.Tensor, epoch: int, advance: Callable[[int], None]
    ) -> tuple[float, float]:
        """One epoch of steps with this run's optimizer, schedule, generator and EMA: (loss, accuracy)."""
        return train_one_epoch(
            self.model,
            self.optimizer,
            self.scheduler,
            images,
            labels,
            self.recipe,
            self.generator,
            self.ema,
            augmented_epoch(epoch, self.recipe),
            advance,
        )

    @property
    def scored(self) -> nn.Module:
        """The weights that val selects and that are saved: the EMA average when the recipe keeps one."""
        return self.ema.module if self.ema is not None else self.model

    def keep_if_best(self, epoch: int, val_acc: float) -> None:
        if val_acc > self.best_acc:
            self.best_state, self.best_epoch, self.best_acc, self.stale = (
                _clone_state(self.scored),
                epoch,
                val_acc,
                0,
            )
        else:
            self.stale += 1

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "best_state": self.best_state,
            "best_epoch": self.best_epoch,
            "best_acc": self.best_acc,
            "stale": self.stale,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(saved["ema"])
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        self.history, self.best_state = saved["history"], saved["best_state"]
        self.best_epoch, self.best_acc, self.stale = saved["best_epoch"], saved["best_acc"], saved["stale"]


def build_seeded(recipe: ModelParams, seed: int, device: torch.device | str = "cpu") -> nn.Module:
    """The model a recipe starts from: seeded initialisation, built, on the device, in its memory format."""
    torch.manual_seed(seed)  # weight initialisation
    return preprocessing_of(recipe).prepare(build_model(recipe.arch).to(device))


@dataclass(frozen=True)
class TrainedModel:
    """What train_recipe made: the model with its best-on-val weights, and how it got there."""

    model: nn.Module  # best_state loaded
    preprocessing: Preprocessing
    best_state: dict[str, torch.Tensor]  # on the CPU
    best_epoch: int
    history: list[dict[str, float]]  # one row per epoch, as Epoch.row
    test_shifts: bool  # chosen on val (recipe.test_shifts: auto) or set by the recipe
    val_scores: dict[str, dict[str, float]]  # val accuracy and loss per way of predicting that was scored


def train_recipe(
    recipe: ModelParams,
    seed: int,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    eval_batch_size: int,
    device: torch.device | str = "cpu",
    checkpointer: Checkpointer | None = None,
    progress: Progress = no_progress,
    on_epoch: Callable[[Epoch], None] | None = None,
) -> TrainedModel:
    """Train a recipe as the train stage does: seed, build, fit, keep the best weights, choose test shifts.

    The train stage, `make frontier` and the CPU zoo train through here, so a number from any of them
    is a number the pipeline would produce; the benchmarks time fit_epochs, the loop inside.

    Args:
        recipe: the model's section of params.yaml, validated (params.model_params or params.revise).
        seed: the model's seed (params.model_seed): initialisation, batch order, augmentation.
        train_data, val_data, eval_batch_size, checkpointer, progress: as for fit_epochs.
        device: where to train.
        on_epoch: called with each epoch as it ends (restored ones first), e.g. to print and save history.
    """
    model = build_seeded(recipe, seed, device)
    last = None
    for last in fit_epochs(
        model, recipe, train_data, val_data, seed, eval_batch_size, checkpointer, progress
    ):
        if on_epoch is not None:
            on_epoch(last)
    if last is None:  # params validation keeps epochs >= 1
        raise ValueError(f"recipe {recipe.arch} trained no epoch: epochs = {recipe.epochs}")
    model.load_state_dict(last.best_state)
    preprocessing = preprocessing_of(recipe)
    test_shifts, val_scores = choose_test_shifts(
        model, recipe.test_shifts, *val_data, eval_batch_size, preprocessing
    )
    return TrainedModel(
        model, preprocessing, last.best_state, last.best_epoch, last.history, test_shifts, val_scores
    )
