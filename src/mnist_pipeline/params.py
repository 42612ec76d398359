"""Typed params.yaml sections; the loader rejects unknown, missing, mistyped and out-of-range keys."""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mnist_pipeline.errors import PipelineError

T = TypeVar("T")

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
TEST_SHIFTS = ("auto", "never", "always")  # auto: train chooses on val (inference.choose_test_shifts)
NUMERICS = ("portable", "native")  # environment.apply_numerics says what each pins


class ParamsError(PipelineError):
    """A params.yaml value that the pipeline cannot use; the message names the key, then the fix."""

    def __init__(
        self,
        problem: str,
        fix: str = "correct it in params.yaml or in your `dvc exp run -S` override; "
        "`git show HEAD:params.yaml > params.yaml` restores the committed file",
    ) -> None:
        super().__init__(f"{problem} (fix: {fix})")


@dataclasses.dataclass(frozen=True)
class DownloadParams:
    timeout_s: float  # per-request socket timeout, seconds


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
    val_size: int  # images held out of the 60,000 training images for model selection
    train_limit: int = 0  # keep only the first N shuffled training images; 0 keeps all (smoke runs)


@dataclasses.dataclass(frozen=True)
class TrainParams:
    device: str  # auto | cpu | cuda | mps; auto picks cuda > mps > cpu
    threads: int  # torch intra-op threads, pinned so reruns are byte-identical
    eval_batch_size: int  # images per forward pass when scoring the val split


@dataclasses.dataclass(frozen=True)
class ModelParams:
    arch: str  # a name in the model registry
    optimizer: str  # sgd | adam | adamw
    lr: float  # peak learning rate
    batch_size: int  # images per optimisation step
    epochs: int  # maximum epochs
    momentum: float = 0.0  # SGD momentum (Adam uses its betas)
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step | cosine | onecycle
    step_epochs: int = 1  # step schedule: multiply lr by gamma every step_epochs epochs
    gamma: float = 1.0  # step schedule factor
    warmup_frac: float = 0.0  # onecycle/cosine: fraction of steps spent warming up
    label_smoothing: float = 0.0
    rotate_deg: float = 0.0  # augmentation: max |rotation|, degrees, drawn per image
    translate_px: float = 0.0  # augmentation: max |shift| per axis, pixels, drawn per image
    scale: float = 0.0  # augmentation: max relative zoom, drawn per image
    clean_epochs: int = 0  # the last N epochs train on unaugmented images
    norm_mean: float = 0.0  # input = (pixel/255 - norm_mean) / norm_std
    norm_std: float = 1.0
    patience: int = 0  # early stopping: epochs without a better val accuracy; 0 = off
    channels_last: bool = False  # NHWC memory format; measured faster on CPU for the small CNNs
    ema_decay: float = (
        0.0  # per-step exponential moving average of the weights, which val scores and train saves; 0 = off
    )
    bf16: bool = (
        False  # bfloat16 autocast for training forward passes; weights, loss and evaluation stay float32
    )
    test_shifts: str = (
        "never"  # predict by the mean softmax over the image and its 1-pixel shifts: auto|never|always
    )


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    batch_size: int  # images per forward pass


@dataclasses.dataclass(frozen=True)
class EnsembleParams:
    rounds: int  # Caruana selection rounds: members added with replacement after the best single model
    within_errors: int  # models this many val errors or fewer behind the best enter the equal average
    folds: int  # val folds the two rules are compared on, each fitted on the others


@dataclasses.dataclass(frozen=True)
class PlotParams:
    dpi: int
    normalize_confusion: bool  # row-normalise the confusion heat maps


def suggest(key: str, valid: typing.Iterable[str]) -> str | None:
    """The valid name a mistyped key most likely meant: a close spelling, or one it starts with."""
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [v for v in valid if key.startswith(v) or v.startswith(key)]
    return max(prefixed, key=len) if prefixed else None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_type(path: str, value: Any, tp: Any) -> Any:
    """Return value coerced to tp (int → float allowed) or raise ParamsError."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ParamsError(f"{path} = {value!r} is a {type(value).__name__}; it must be a {_type_name(tp)}")


def build_section(cls: type[T], section: Any, path: str, handled: tuple[str, ...] = ()) -> T:
    """Build dataclass cls from a params mapping, naming the key path in any error.

    Keys in handled are valid but not fields of cls: the caller reads them itself.
    """
    if not isinstance(section, dict):
        raise ParamsError(f"{path} must be a mapping of keys to values, got {section!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    valid = [*fields, *handled]
    for key in section:
        if key not in valid:
            close = suggest(str(key), valid)
            hint = f" (did you mean {path}.{close}?)" if close else ""
            raise ParamsError(f"unknown key {path}.{key}{hint}; valid keys: {', '.join(valid)}")
    values = {}
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING
        if name not in section:
            if required:
                raise ParamsError(f"missing key {path}.{name} in params.yaml")
            continue
        values[name] = _check_type(f"{path}.{name}", section[name], hints[name])
    return cls(**values)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ParamsError(message)


def _choice(path: str, value: str, valid: typing.Iterable[str]) -> None:
    valid = sorted(valid)
    _require(value in valid, f"{path} = {value!r} is not valid; choose one of: {', '.join(valid)}")


def validate_model(params: ModelParams, path: str, architectures: Iterable[str] | None = None) -> ModelParams:
    """Range-check one model recipe; arch is checked against the registry names when given."""
    if architectures is not None:
        _choice(f"{path}.arch", params.arch, architectures)
    _choice(f"{path}.optimizer", params.optimizer, OPTIMIZERS)
    _choice(f"{path}.schedule", params.schedule, SCHEDULES)
    _choice(f"{path}.test_shifts", params.test_shifts, TEST_SHIFTS)
    _require(params.lr > 0, f"{path}.lr = {params.lr} must be > 0")
    _require(
        params.batch_size >= 2, f"{path}.batch_size = {params.batch_size} must be >= 2 (BatchNorm needs 2)"
    )
    _require(params.epochs >= 1, f"{path}.epochs = {params.epochs} must be >= 1")
    _require(params.momentum >= 0, f"{path}.momentum = {params.momentum} must be >= 0")
    _require(params.weight_decay >= 0, f"{path}.weight_decay = {params.weight_decay} must be >= 0")
    _require(params.step_epochs >= 1, f"{path}.step_epochs = {params.step_epochs} must be >= 1")
    _require(params.gamma > 0, f"{path}.gamma = {params.gamma} must be > 0")
    _require(0 <= params.warmup_frac < 1, f"{path}.warmup_frac = {params.warmup_frac} must be in [0, 1)")
    _require(
        0 <= params.label_smoothing < 1,
        f"{path}.label_smoothing = {params.label_smoothing} must be in [0, 1)",
    )
    _require(0 <= params.rotate_deg <= 180, f"{path}.rotate_deg = {params.rotate_deg} must be in [0, 180]")
    _require(
        0 <= params.translate_px <= 14, f"{path}.translate_px = {params.translate_px} must be in [0, 14]"
    )
    _require(0 <= params.scale < 1, f"{path}.scale = {params.scale} must be in [0, 1)")
    _require(
        0 <= params.clean_epochs <= params.epochs,
        f"{path}.clean_epochs = {params.clean_epochs} must be in [0, epochs = {params.epochs}]",
    )
    _require(
        0 <= params.ema_decay < 1, f"{path}.ema_decay = {params.ema_decay} must be in [0, 1) (0 turns it off)"
    )
    _require(params.norm_std > 0, f"{path}.norm_std = {params.norm_std} must be > 0")
    _require(
        params.patience >= 0, f"{path}.patience = {params.patience} must be >= 0 (0 turns early stopping off)"
    )
    return params


def revise(
    recipe: ModelParams, path: str, architectures: Iterable[str] | None = None, **changes: Any
) -> ModelParams:
    """recipe with some keys changed, typed and range-checked again as the loader checks params.yaml.

    What a tool overrides (`make frontier RUNS=bnnet:12`, the CPU zoo's few steps) is held to the same
    rules as what params.yaml says: no recipe reaches training without passing them.
    """
    section = {**dataclasses.asdict(recipe), **changes}
    return validate_model(build_section(ModelParams, section, path), path, architectures)


def validate_seed(seed: Any, path: str = "seed") -> int:
    """A seed (the top-level one, or a model's own) must be a non-negative integer."""
    seed = _check_type(path, seed, int)
    _require(seed >= 0, f"{path} = {seed} must be >= 0")
    return seed


def numerics_param(config: dict[str, Any]) -> str:
    """The top-level numerics mode: portable (the same bits on every x86-64 AVX2 CPU) or native."""
    mode = _check_type("numerics", _section(config, "numerics"), str)
    _choice("numerics", mode, NUMERICS)
    return mode


MNIST_TRAIN_SIZE = 60_000


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml as a plain mapping, with a clear error when it is not one."""
    path = Path(path)
    try:
        with path.open() as f:
            config = yaml.safe_load(f)
    except FileNotFoundError:
        raise ParamsError(f"{path} not found", "run from the project root or pass --params") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ParamsError(f"{path} must be a mapping at the top level")
    return config


def _section(config: dict[str, Any], name: str) -> Any:
    if name not in config:
        raise ParamsError(f"missing section {name}: in params.yaml")
    return config[name]


def download_params(config: dict[str, Any]) -> DownloadParams:
    """The download: section, validated."""
    params = build_section(DownloadParams, _section(config, "download"), "download")
    _require(params.timeout_s > 0, f"download.timeout_s = {params.timeout_s} must be > 0")
    return params


def preprocess_params(config: dict[str, Any]) -> PreprocessParams:
    """The preprocess: section, validated."""
    params = build_section(PreprocessParams, _section(config, "preprocess"), "preprocess")
    _require(
        1 <= params.val_size < MNIST_TRAIN_SIZE,
        f"preprocess.val_size = {params.val_size} must be between 1 and {MNIST_TRAIN_SIZE - 1} "
        f"(it is held out of the {MNIST_TRAIN_SIZE} training images)",
    )
    _require(
        params.train_limit >= 0, f"preprocess.train_limit = {params.train_limit} must be >= 0 (0 keeps all)"
    )
    return params


def train_params(config: dict[str, Any]) -> TrainParams:
    """The train: section shared by every model, validated."""
    params = build_section(TrainParams, _section(config, "train"), "train")
    _choice("train.device", params.device, DEVICES)
    _require(params.threads >= 1, f"train.threads = {params.threads} must be >= 1")
    _require(params.eval_batch_size >= 1, f"train.eval_batch_size = {params.eval_batch_size} must be >= 1")
    return params


def model_names(config: dict[str, Any]) -> list[str]:
    """The names under models:, which become stage names and file names."""
    models = _section(config, "models")
    if not isinstance(models, dict) or not models:
        raise ParamsError("models: in params.yaml must map model names to recipes")
    for name in models:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
            raise ParamsError(
                f"model name {name!r} must be lower-case letters, digits and _ (it names files and stages)"
            )
    return list(models)


def model_params(
    config: dict[str, Any], name: str, architectures: Iterable[str] | None = None
) -> ModelParams:
    """The models.<name>: recipe, validated (arch too when the registry names are given)."""
    models = config["models"] if name in model_names(config) else {}
    if name not in models:
        raise ParamsError(
            f"no models.{name} in params.yaml; defined models: {', '.join(model_names(config))}"
        )
    path = f"models.{name}"
    recipe = build_section(ModelParams, models[name], path, handled=(SEED_OFFSET,))
    if SEED_OFFSET in models[name]:  # a bad models.<name>.seed_offset fails with the rest of the recipe
        validate_seed(models[name][SEED_OFFSET], f"{path}.{SEED_OFFSET}")
    return validate_model(recipe, path, architectures)


# A model's seed offset: not part of its recipe (ModelParams; the model file and checkpoint fingerprint
# record the resulting seed instead). `bnnet_s1: {arch: bnnet, seed_offset: 1, ...}` is bnnet trained from
# another initialisation, order and augmentation, scored on the same val split. An offset rather than a
# seed of its own, so that `-S seed=N` moves every model together and members of different offsets
# never share a seed.
SEED_OFFSET = "seed_offset"


def model_seed(config: dict[str, Any], name: str) -> int:
    """The seed models.<name> trains with: the top-level seed plus its `seed_offset` (default 0)."""
    recipe = config["models"][name]
    offset = 0
    if isinstance(recipe, dict) and SEED_OFFSET in recipe:
        offset = validate_seed(recipe[SEED_OFFSET], f"models.{name}.{SEED_OFFSET}")
    return validate_seed(_section(config, "seed")) + offset


def evaluate_params(config: dict[str, Any]) -> EvaluateParams:
    """The evaluate: section, validated."""
    params = build_section(EvaluateParams, _section(config, "evaluate"), "evaluate")
    _require(params.batch_size >= 1, f"evaluate.batch_size = {params.batch_size} must be >= 1")
    return params


def ensemble_params(config: dict[str, Any]) -> EnsembleParams:
    """The ensemble: section, validated."""
    params = build_section(EnsembleParams, _section(config, "ensemble"), "ensemble")
    _require(
        params.rounds >= 0, f"ensemble.rounds = {params.rounds} must be >= 0 (0 keeps the best model alone)"
    )
    _require(
        params.within_errors >= 0,
        f"ensemble.within_errors = {params.within_errors} must be >= 0 (0 averages the best model's ties)",
    )
    _require(
        params.folds >= 2,
        f"ensemble.folds = {params.folds} must be >= 2 (each rule is fitted on the other folds; 5 is usual)",
    )
    return params


def plot_params(config: dict[str, Any]) -> PlotParams:
    """The plot: section, validated."""
    params = build_section(PlotParams, _section(config, "plot"), "plot")
    _require(params.dpi >= 10, f"plot.dpi = {params.dpi} must be >= 10")
    return params


@dataclasses.dataclass(frozen=True)
class GuardParams:
    max_accuracy_drop_pp: (
        float  # fail the PR check when a model's test accuracy falls by more, percentage points
    )


def guard_params(config: dict[str, Any]) -> GuardParams:
    """The guard: section, validated."""
    params = build_section(GuardParams, _section(config, "guard"), "guard")
    _require(
        params.max_accuracy_drop_pp >= 0,
        f"guard.max_accuracy_drop_pp = {params.max_accuracy_drop_pp} must be >= 0",
    )
    return params


SECTIONS = (
    "seed",
    "numerics",
    "download",
    "preprocess",
    "train",
    "models",
    "evaluate",
    "ensemble",
    "plot",
    "guard",
)


def check_params(config: dict[str, Any], architectures: Iterable[str] | None = None) -> None:
    """Validate every section of params.yaml; raise ParamsError on the first problem."""
    for key in config:
        if key not in SECTIONS:
            close = suggest(str(key), SECTIONS)
            hint = f" (did you mean {close}?)" if close else ""
            raise ParamsError(
                f"unknown section {key}{hint} in params.yaml; valid sections: {', '.join(SECTIONS)}"
            )
    validate_seed(_section(config, "seed"))
    numerics_param(config)
    download_params(config)
    preprocess_params(config)
    train_params(config)
    for name in model_names(config):
        model_params(config, name, architectures)
    evaluate_params(config)
    ensemble_params(config)
    plot_params(config)
    guard_params(config)
