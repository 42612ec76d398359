"""params.yaml loading: the committed file is valid, and every kind of mistake gets one clear line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_pipeline.models import MODELS
from mnist_pipeline.params import (
    DownloadParams,
    EnsembleParams,
    EvaluateParams,
    GuardParams,
    ModelParams,
    ParamsError,
    PlotParams,
    PreprocessParams,
    TrainParams,
    build_section,
    check_params,
    download_params,
    ensemble_params,
    evaluate_params,
    guard_params,
    load_params,
    model_names,
    model_params,
    numerics_param,
    plot_params,
    preprocess_params,
    suggest,
    train_params,
    validate_seed,
)

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = "seed, numerics, download, preprocess, train, models, evaluate, ensemble, plot, guard"
TRAIN_KEYS = "device, threads, eval_batch_size"
# The smallest recipe: only the required keys, each at the edge the validator accepts.
MINIMAL = {"arch": "lenet", "optimizer": "sgd", "lr": 0.1, "batch_size": 2, "epochs": 3}


@pytest.fixture
def raw() -> dict:
    return copy.deepcopy(load_params(ROOT / "params.yaml"))


def test_committed_params_are_valid(raw: dict) -> None:
    check_params(raw, MODELS)
    tutorials = {n for n, card in MODELS.items() if any(lab.startswith("tutorial-") for lab in card.labels)}
    assert len(tutorials) == 5 and {recipe["arch"] for recipe in raw["models"].values()} >= tutorials


def test_committed_sections_load(raw: dict) -> None:
    """Each loader returns the typed committed values, ints widened to float where the field is a float."""
    assert download_params(raw) == DownloadParams(timeout_s=60.0)
    assert type(download_params(raw).timeout_s) is float
    assert preprocess_params(raw) == PreprocessParams(val_size=5000, train_limit=0)
    assert train_params(raw) == TrainParams(device="auto", threads=2, eval_batch_size=250)
    assert evaluate_params(raw) == EvaluateParams(batch_size=250)
    assert ensemble_params(raw) == EnsembleParams(rounds=20, within_errors=6, folds=5)
    assert plot_params(raw) == PlotParams(dpi=100, normalize_confusion=False)
    assert guard_params(raw) == GuardParams(max_accuracy_drop_pp=0.2)
    assert model_names(raw) == list(raw["models"])  # in params.yaml's order
    assert validate_seed(raw["seed"]) == 0


def test_load_params_defaults_to_params_yaml_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert load_params() == load_params(str(ROOT / "params.yaml"))


FIX = (
    " (fix: correct it in params.yaml or in your `dvc exp run -S` override; "
    "`git show HEAD:params.yaml > params.yaml` restores the committed file)"
)


def problem(error: BaseException) -> str:
    """A ParamsError's message without the fix that every params value error ends with."""
    message = str(error)
    assert message.endswith(FIX), message
    return message.removesuffix(FIX)


def error_of(raw: dict) -> str:
    with pytest.raises(ParamsError) as info:
        check_params(raw, MODELS)
    message = problem(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_suggests_the_close_one(raw: dict) -> None:
    raw["models"]["lenet"]["lr_rate"] = 0.1
    message = error_of(raw)
    assert "models.lenet.lr_rate" in message and "did you mean models.lenet.lr?" in message


def test_unknown_key_suggests_by_spelling(raw: dict) -> None:
    raw["train"]["thread"] = 2
    assert (
        error_of(raw) == f"unknown key train.thread (did you mean train.threads?); valid keys: {TRAIN_KEYS}"
    )


@pytest.mark.parametrize("key", ["zzz", 7])
def test_unknown_key_without_a_suggestion(raw: dict, key: object) -> None:
    raw["train"][key] = 2
    assert error_of(raw) == f"unknown key train.{key}; valid keys: {TRAIN_KEYS}"


def test_unknown_section(raw: dict) -> None:
    raw["trian"] = {}
    assert (
        error_of(raw)
        == f"unknown section trian (did you mean train?) in params.yaml; valid sections: {SECTIONS}"
    )


@pytest.mark.parametrize("key", ["zzz", 7])
def test_unknown_section_without_a_suggestion(raw: dict, key: object) -> None:
    raw[key] = {}
    assert error_of(raw) == f"unknown section {key} in params.yaml; valid sections: {SECTIONS}"


@pytest.mark.parametrize("section", SECTIONS.split(", "))
def test_missing_section(raw: dict, section: str) -> None:
    del raw[section]
    assert error_of(raw) == f"missing section {section}: in params.yaml"


@pytest.mark.parametrize("value", [None, [1], 5])
def test_section_must_be_a_mapping(raw: dict, value: object) -> None:
    raw["plot"] = value
    assert error_of(raw) == f"plot must be a mapping of keys to values, got {value!r}"


def test_missing_key(raw: dict) -> None:
    del raw["models"]["cnn2"]["batch_size"]
    assert error_of(raw) == "missing key models.cnn2.batch_size in params.yaml"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lr", "fast", "models.lenet.lr = 'fast' is a str; it must be a float"),
        ("lr", True, "models.lenet.lr = True is a bool; it must be a float"),
        ("lr", None, "models.lenet.lr = None is a NoneType; it must be a float"),
        ("epochs", 2.5, "models.lenet.epochs = 2.5 is a float; it must be a int"),
        ("epochs", True, "models.lenet.epochs = True is a bool; it must be a int"),
        ("epochs", "3", "models.lenet.epochs = '3' is a str; it must be a int"),
        ("channels_last", "yes", "models.lenet.channels_last = 'yes' is a str; it must be a bool"),
        ("bf16", 1, "models.lenet.bf16 = 1 is a int; it must be a bool"),
        ("arch", 5, "models.lenet.arch = 5 is a int; it must be a str"),
        ("optimizer", True, "models.lenet.optimizer = True is a bool; it must be a str"),
    ],
)
def test_wrong_type(raw: dict, key: str, value: object, expected: str) -> None:
    raw["models"]["lenet"][key] = value
    assert error_of(raw) == expected


@pytest.mark.parametrize(
    ("section", "key", "kind"),
    [
        ("download", "timeout_s", "float"),
        ("preprocess", "val_size", "int"),
        ("train", "threads", "int"),
        ("evaluate", "batch_size", "int"),
        ("plot", "normalize_confusion", "bool"),
        ("guard", "max_accuracy_drop_pp", "float"),
    ],
)
def test_wrong_type_names_the_section_key(raw: dict, section: str, key: str, kind: str) -> None:
    raw[section][key] = [1]
    assert error_of(raw) == f"{section}.{key} = [1] is a list; it must be a {kind}"


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        ({"timeout_s": 2}, 2.0, float),
        ({"timeout_s": 2.5}, 2.5, float),
    ],
)
def test_float_fields_take_ints_and_floats(section: dict, value: float, expected: type) -> None:
    params = build_section(DownloadParams, section, "download")
    assert params.timeout_s == value and type(params.timeout_s) is expected


def test_int_str_and_bool_fields_keep_their_type() -> None:
    train = build_section(TrainParams, {"device": "cpu", "threads": 3, "eval_batch_size": 7}, "train")
    plot = build_section(PlotParams, {"dpi": 10, "normalize_confusion": True}, "plot")
    assert (train, plot) == (TrainParams("cpu", 3, 7), PlotParams(10, True))
    assert type(train.threads) is int and type(plot.normalize_confusion) is bool


def test_model_defaults() -> None:
    """Keys left out of a recipe take the documented defaults."""
    assert model_params({"models": {"m": MINIMAL}}, "m") == ModelParams(
        arch="lenet",
        optimizer="sgd",
        lr=0.1,
        batch_size=2,
        epochs=3,
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        step_epochs=1,
        gamma=1.0,
        warmup_frac=0.0,
        label_smoothing=0.0,
        rotate_deg=0.0,
        translate_px=0.0,
        scale=0.0,
        clean_epochs=0,
        norm_mean=0.0,
        norm_std=1.0,
        patience=0,
        channels_last=False,
        ema_decay=0.0,
        bf16=False,
        test_shifts="never",
    )


def test_preprocess_train_limit_defaults_to_all() -> None:
    assert preprocess_params({"preprocess": {"val_size": 10}}) == PreprocessParams(val_size=10, train_limit=0)


def test_model_keys_after_a_defaulted_one_are_read() -> None:
    """A recipe that skips momentum still reads every key after it."""
    recipe = {**MINIMAL, "schedule": "step", "step_epochs": 2, "gamma": 0.5, "patience": 4, "bf16": True}
    params = model_params({"models": {"m": recipe}}, "m")
    assert (
        params.momentum,
        params.schedule,
        params.step_epochs,
        params.gamma,
        params.patience,
        params.bf16,
    ) == (0.0, "step", 2, 0.5, 4, True)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lr", 1e-6),
        ("lr", 0.5),
        ("batch_size", 2),
        ("epochs", 1),
        ("momentum", 0),
        ("momentum", 0.5),
        ("weight_decay", 0),
        ("weight_decay", 0.5),
        ("step_epochs", 1),
        ("gamma", 0.5),
        ("warmup_frac", 0),
        ("warmup_frac", 0.99),
        ("label_smoothing", 0),
        ("label_smoothing", 0.99),
        ("rotate_deg", 0),
        ("rotate_deg", 180),
        ("translate_px", 0),
        ("translate_px", 14),
        ("scale", 0),
        ("scale", 0.99),
        ("clean_epochs", 0),
        ("clean_epochs", 3),
        ("ema_decay", 0),
        ("ema_decay", 0.99),
        ("norm_std", 0.5),
        ("patience", 0),
        ("optimizer", "adam"),
        ("optimizer", "adamw"),
        ("schedule", "step"),
        ("schedule", "cosine"),
        ("schedule", "onecycle"),
        ("test_shifts", "auto"),
        ("test_shifts", "always"),
        ("test_shifts", "never"),
    ],
)
def test_model_edge_values_are_accepted(key: str, value: object) -> None:
    params = model_params({"models": {"m": {**MINIMAL, key: value}}}, "m")
    assert getattr(params, key) == value


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lr", 0, "lr = 0.0 must be > 0"),
        ("lr", -0.1, "lr = -0.1 must be > 0"),
        ("batch_size", 1, "batch_size = 1 must be >= 2 (BatchNorm needs 2)"),
        ("epochs", 0, "epochs = 0 must be >= 1"),
        ("momentum", -0.1, "momentum = -0.1 must be >= 0"),
        ("weight_decay", -0.1, "weight_decay = -0.1 must be >= 0"),
        ("step_epochs", 0, "step_epochs = 0 must be >= 1"),
        ("gamma", 0, "gamma = 0.0 must be > 0"),
        ("warmup_frac", -0.1, "warmup_frac = -0.1 must be in [0, 1)"),
        ("warmup_frac", 1, "warmup_frac = 1.0 must be in [0, 1)"),
        ("label_smoothing", -0.1, "label_smoothing = -0.1 must be in [0, 1)"),
        ("label_smoothing", 1.0, "label_smoothing = 1.0 must be in [0, 1)"),
        ("rotate_deg", -0.5, "rotate_deg = -0.5 must be in [0, 180]"),
        ("rotate_deg", 180.5, "rotate_deg = 180.5 must be in [0, 180]"),
        ("translate_px", -0.5, "translate_px = -0.5 must be in [0, 14]"),
        ("translate_px", 14.5, "translate_px = 14.5 must be in [0, 14]"),
        ("scale", -0.1, "scale = -0.1 must be in [0, 1)"),
        ("scale", 1, "scale = 1.0 must be in [0, 1)"),
        ("clean_epochs", -1, "clean_epochs = -1 must be in [0, epochs = 3]"),
        ("clean_epochs", 4, "clean_epochs = 4 must be in [0, epochs = 3]"),
        ("ema_decay", -0.1, "ema_decay = -0.1 must be in [0, 1) (0 turns it off)"),
        ("ema_decay", 1.0, "ema_decay = 1.0 must be in [0, 1) (0 turns it off)"),
        ("norm_std", 0, "norm_std = 0.0 must be > 0"),
        ("patience", -1, "patience = -1 must be >= 0 (0 turns early stopping off)"),
        ("optimizer", "rmsprop", "optimizer = 'rmsprop' is not valid; choose one of: adam, adamw, sgd"),
        (
            "schedule",
            "linear",
            "schedule = 'linear' is not valid; choose one of: constant, cosine, onecycle, step",
        ),
        (
            "test_shifts",
            "yes",
            "test_shifts = 'yes' is not valid; choose one of: always, auto, never",
        ),
    ],
)
def test_model_out_of_range(key: str, value: object, expected: str) -> None:
    with pytest.raises(ParamsError) as info:
        model_params({"models": {"m": {**MINIMAL, key: value}}}, "m")
    assert problem(info.value) == f"models.m.{expected}"


def test_out_of_range_in_committed_recipe_names_its_path(raw: dict) -> None:
    epochs = raw["models"]["lenet"]["epochs"]
    raw["models"]["lenet"]["clean_epochs"] = epochs + 1
    assert error_of(raw) == f"models.lenet.clean_epochs = {epochs + 1} must be in [0, epochs = {epochs}]"


def test_arch_is_free_without_a_registry() -> None:
    assert model_params({"models": {"m": {**MINIMAL, "arch": "anything"}}}, "m").arch == "anything"


def test_arch_is_checked_against_the_registry() -> None:
    raw = {"models": {"m": MINIMAL}}
    assert model_params(raw, "m", ["mlp", "lenet"]).arch == "lenet"
    with pytest.raises(ParamsError) as info:
        model_params(raw, "m", ["mlp", "cnn2"])
    assert problem(info.value) == "models.m.arch = 'lenet' is not valid; choose one of: cnn2, mlp"


def test_unknown_architecture_lists_valid_names(raw: dict) -> None:
    raw["models"]["lenet"]["arch"] = "lenet5"
    message = error_of(raw)
    assert "models.lenet.arch = 'lenet5' is not valid" in message
    assert all(name in message for name in MODELS)


def test_unknown_optimizer_lists_valid_names(raw: dict) -> None:
    raw["models"]["mlp"]["optimizer"] = "rmsprop"
    assert error_of(raw) == "models.mlp.optimizer = 'rmsprop' is not valid; choose one of: adam, adamw, sgd"


@pytest.mark.parametrize(("val_size", "ok"), [(0, False), (1, True), (59_999, True), (60_000, False)])
def test_val_size_bounds(val_size: int, ok: bool) -> None:
    raw = {"preprocess": {"val_size": val_size}}
    if ok:
        assert preprocess_params(raw).val_size == val_size
        return
    with pytest.raises(ParamsError) as info:
        preprocess_params(raw)
    assert problem(info.value) == (
        f"preprocess.val_size = {val_size} must be between 1 and 59999 "
        "(it is held out of the 60000 training images)"
    )


# (section, key, lowest accepted value, highest rejected value, message);
# the other keys come from params.yaml.
BOUNDS = [
    ("download", "timeout_s", 0.5, 0, "download.timeout_s = 0.0 must be > 0"),
    ("preprocess", "train_limit", 0, -1, "preprocess.train_limit = -1 must be >= 0 (0 keeps all)"),
    ("train", "threads", 1, 0, "train.threads = 0 must be >= 1"),
    ("train", "eval_batch_size", 1, 0, "train.eval_batch_size = 0 must be >= 1"),
    ("evaluate", "batch_size", 1, 0, "evaluate.batch_size = 0 must be >= 1"),
    ("ensemble", "rounds", 0, -1, "ensemble.rounds = -1 must be >= 0 (0 keeps the best model alone)"),
    (
        "ensemble",
        "within_errors",
        0,
        -1,
        "ensemble.within_errors = -1 must be >= 0 (0 averages the best model's ties)",
    ),
    (
        "ensemble",
        "folds",
        2,
        1,
        "ensemble.folds = 1 must be >= 2 (each rule is fitted on the other folds; 5 is usual)",
    ),
    ("plot", "dpi", 10, 9, "plot.dpi = 9 must be >= 10"),
    ("guard", "max_accuracy_drop_pp", 0, -0.1, "guard.max_accuracy_drop_pp = -0.1 must be >= 0"),
]
LOADERS = {
    "download": download_params,
    "preprocess": preprocess_params,
    "train": train_params,
    "evaluate": evaluate_params,
    "ensemble": ensemble_params,
    "plot": plot_params,
    "guard": guard_params,
}


@pytest.mark.parametrize(("section", "key", "accepted", "rejected", "expected"), BOUNDS)
def test_section_bounds(
    raw: dict, section: str, key: str, accepted: object, rejected: object, expected: str
) -> None:
    raw[section][key] = accepted
    assert getattr(LOADERS[section](raw), key) == accepted
    check_params(raw, MODELS)
    raw[section][key] = rejected
    assert error_of(raw) == expected


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "mps"])
def test_train_devices(raw: dict, device: str) -> None:
    raw["train"]["device"] = device
    assert train_params(raw).device == device


def test_unknown_device(raw: dict) -> None:
    raw["train"]["device"] = "gpu"
    assert error_of(raw) == "train.device = 'gpu' is not valid; choose one of: auto, cpu, cuda, mps"


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (-1, "seed = -1 must be >= 0"),
        (1.5, "seed = 1.5 is a float; it must be a int"),
        (True, "seed = True is a bool; it must be a int"),
    ],
)
def test_bad_seed(raw: dict, seed: object, expected: str) -> None:
    raw["seed"] = seed
    assert error_of(raw) == expected


@pytest.mark.parametrize(
    ("numerics", "expected"),
    [
        ("fast", "numerics = 'fast' is not valid; choose one of: native, portable"),
        ("Portable", "numerics = 'Portable' is not valid; choose one of: native, portable"),
        (True, "numerics = True is a bool; it must be a str"),
    ],
)
def test_bad_numerics(raw: dict, numerics: object, expected: str) -> None:
    raw["numerics"] = numerics
    assert error_of(raw) == expected


@pytest.mark.parametrize("numerics", ["portable", "native"])
def test_numerics_accepted(raw: dict, numerics: str) -> None:
    raw["numerics"] = numerics
    assert numerics_param(raw) == numerics


def test_committed_numerics_are_portable(raw: dict) -> None:
    assert numerics_param(raw) == "portable"


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_seed_accepted(seed: int) -> None:
    assert validate_seed(seed) == seed


@pytest.mark.parametrize("name", ["vgg", "m"])
def test_model_name_must_be_defined(raw: dict, name: str) -> None:
    with pytest.raises(ParamsError) as info:
        model_params(raw, name, MODELS)
    assert problem(info.value) == (
        f"no models.{name} in params.yaml; defined models: {', '.join(raw['models'])}"
    )


@pytest.mark.parametrize("name", ["a", "a1_b", "resnet18"])
def test_model_names_accepted(name: str) -> None:
    assert model_names({"models": {name: {}, "z": {}}}) == [name, "z"]


@pytest.mark.parametrize("name", ["Le Net", "1a", "_a", "A", "a-b", "a.b", "", 7])
def test_model_names_must_be_file_safe(raw: dict, name: object) -> None:
    raw["models"][name] = raw["models"].pop("lenet")
    assert error_of(raw) == (
        f"model name {name!r} must be lower-case letters, digits and _ (it names files and stages)"
    )


@pytest.mark.parametrize("models", [None, {}, [], ["lenet"], "lenet"])
def test_models_must_be_a_non_empty_mapping(raw: dict, models: object) -> None:
    raw["models"] = models
    assert error_of(raw) == "models: in params.yaml must map model names to recipes"


@pytest.mark.parametrize(
    ("key", "valid", "expected"),
    [
        ("thread", ["device", "threads", "eval_batch_size"], "threads"),  # a close spelling
        ("lr_rate", ["lr", "label_smoothing"], "lr"),  # the key starts with a valid name
        ("warm", ["lr", "warmup_frac"], "warmup_frac"),  # a valid name starts with the key
        ("ab", ["abzzzz", "abaaaaaaa"], "abaaaaaaa"),  # several prefixes: the longest
        ("zzz", ["device", "threads"], None),
    ],
)
def test_suggest(key: str, valid: list[str], expected: str | None) -> None:
    assert suggest(key, iter(valid)) == expected


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value) == f"{path} not found (fix: run from the project root or pass --params)"


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    # PyYAML's error spans several lines; the message keeps only the first.
    assert problem(info.value) == f"{path} is not valid YAML: while parsing a flow sequence"


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as info:
        load_params(str(path))
    assert problem(info.value) == f"{path} must be a mapping at the top level"


# One real `python stages/<stage>.py` run; tests/unit/test_stages.py checks every stage in-process.
@pytest.mark.parametrize("stage", ["train"])
def test_stage_stops_before_any_work_with_one_line(raw: dict, tmp_path: Path, stage: str) -> None:
    raw["models"]["cnn6"]["lr"] = -1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    args = {
        "download": ["--out", str(out)],
        "preprocess": ["--raw", str(out), "--out", str(out)],
        "train": [
            "--model",
            "lenet",
            "--data",
            str(out),
            "--out",
            str(out / "m.pt"),
            "--history",
            str(out / "h.csv"),
            "--checkpoint",
            str(out / "c.pt"),
            "--env",
            str(out / "e.json"),
        ],
    }[stage]
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params), *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    restore = {
        "download": "`dvc checkout download`",
        "preprocess": "`dvc checkout preprocess`",
        "train": "`dvc checkout train@lenet`",  # every output of train is DVC-cached
    }[stage]
    assert result.stderr == (
        f"error: models.cnn6.lr = -1.0 must be > 0{FIX}; "
        f"its last committed outputs come back with {restore}\n"
    )
    assert not out.exists()


def test_a_model_seed_offset_moves_with_the_top_level_seed(raw: dict) -> None:
    from mnist_pipeline.params import model_seed

    raw["seed"] = 3
    raw["models"]["bnnet_s1"] = {**raw["models"]["bnnet"], "seed_offset": 1}
    check_params(raw, MODELS)
    assert (model_seed(raw, "bnnet_s1"), model_seed(raw, "bnnet")) == (4, 3)
    raw["seed"] = 4  # `-S seed=4` moves every model, and bnnet_s1 never trains bnnet's weights
    assert (model_seed(raw, "bnnet_s1"), model_seed(raw, "bnnet")) == (5, 4)
    # the offset is not part of the recipe; model files and resume fingerprints record the seed
    assert model_params(raw, "bnnet_s1", MODELS) == model_params(raw, "bnnet", MODELS)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "models.lenet.seed_offset = -1 must be >= 0"),
        (1.5, "models.lenet.seed_offset = 1.5 is a float; it must be a int"),
    ],
)
def test_a_bad_seed_offset_is_refused_with_the_recipe(raw: dict, value: object, message: str) -> None:
    raw["models"]["lenet"]["seed_offset"] = value
    assert error_of(raw) == message


def test_a_misspelt_seed_offset_suggests_seed_offset(raw: dict) -> None:
    raw["models"]["lenet"]["seed_ofset"] = 1
    assert error_of(raw).startswith(
        "unknown key models.lenet.seed_ofset (did you mean models.lenet.seed_offset?)"
    )


def test_a_revised_recipe_is_checked_again(raw: dict) -> None:
    from mnist_pipeline.params import revise

    recipe = model_params(raw, "bnnet", MODELS)
    assert revise(recipe, "models.bnnet", epochs=12).epochs == 12
    with pytest.raises(ParamsError, match=r"models.bnnet.epochs = -1 must be >= 1"):
        revise(recipe, "models.bnnet", epochs=-1)  # `make frontier RUNS=bnnet:-1`
    with pytest.raises(ParamsError, match=r"models.bnnet.optimizer = 'lamb' is not valid"):
        revise(recipe, "models.bnnet", optimizer="lamb")
    with pytest.raises(ParamsError, match=r"unknown key models.bnnet.epoch "):
        revise(recipe, "models.bnnet", epoch=3)
    with pytest.raises(ParamsError, match=r"models.bnnet.arch = 'nope' is not valid"):
        revise(recipe, "models.bnnet", MODELS, arch="nope")
