"""Model files and training checkpoints: round trip, digests, atomic writes, and refusal of anything else."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from mnist_pipeline import artifacts, files
from mnist_pipeline.artifacts import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    FileCheckpointer,
    ModelFile,
    ModelFileError,
    load_model,
    package_digest,
)
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import file_digest, fingerprint
from mnist_pipeline.inference import Preprocessing
from mnist_pipeline.models import MODELS, build_model


class Payload:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def first_line_of_load_error(path: Path) -> str:
    try:
        torch.load(path, weights_only=True)
    except RuntimeError as e:
        return str(e).strip().splitlines()[0]
    raise AssertionError(f"{path} loaded")


# --- fingerprint, file_digest, package_digest ---------------------------------------------------------------


def test_fingerprint_is_sha256_of_sorted_json_with_str_fallback() -> None:
    expected = hashlib.sha256(b'[{"a": 2, "b": 1}, "x/y", 3]').hexdigest()
    assert fingerprint({"b": 1, "a": 2}, Path("x/y"), 3) == expected


def test_fingerprint_depends_on_every_part_and_their_order() -> None:
    base = fingerprint("recipe", {"lr": 0.1}, 7)
    assert fingerprint("recipe", {"lr": 0.1}, 7) == base
    assert fingerprint(7, {"lr": 0.1}, "recipe") != base
    assert fingerprint("recipe", {"lr": 0.2}, 7) != base
    assert fingerprint("recipe", {"lr": 0.1}) != base
    assert fingerprint() == hashlib.sha256(b"[]").hexdigest()


@pytest.mark.parametrize("size", [0, 5, (1 << 20) - 1, (5 << 20) // 2])
def test_file_digest_is_md5_of_the_bytes(tmp_path: Path, size: int) -> None:
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.md5(data).hexdigest()


def test_file_digest_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "nope")


def test_package_digest_covers_each_core_module_by_name_and_content() -> None:
    root = Path(artifacts.__file__).parent
    files = sorted(root.rglob("*.py"))
    parts = [[p.relative_to(root).as_posix(), hashlib.md5(p.read_bytes()).hexdigest()] for p in files]
    assert len(parts) > 5 and ["artifacts.py", file_digest(root / "artifacts.py")] in parts
    assert ["architectures/lenet.py", file_digest(root / "architectures" / "lenet.py")] in parts
    expected = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    assert package_digest() == expected


# --- atomic writes ------------------------------------------------------------------------------------------


def test_save_writes_beside_the_target_then_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "deep" / "er" / "ckpt.pt"
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(src: Path, dst: Path) -> None:
        assert Path(src).is_file() and not Path(dst).exists()
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", spy_replace)
    FileCheckpointer(path, "fp").save({"epoch": 1})
    # written in a private folder beside the target, under the name torch.save records in the zip
    ((staged, target),) = replaced
    assert target == path and staged.name == "ckpt.pt.tmp" and staged.parent.parent == path.parent
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]


def test_a_failed_write_leaves_the_previous_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.pt"
    record(weights={}).save(path)
    before = path.read_bytes()

    def half_write(obj: Any, f: Path) -> None:
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        record(weights={}, epochs_run=4).save(path)
    assert path.read_bytes() == before


# --- FileCheckpointer ---------------------------------------------------------------------------------------


def test_checkpointer_round_trip_and_file_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a" / "b" / "ckpt.pt"
    ckpt = FileCheckpointer(str(path), "fp-1")
    assert ckpt.path == path and isinstance(ckpt.path, Path) and ckpt.run_fingerprint == "fp-1"
    assert ckpt.load() is None
    state = {"epoch": 3, "weights": torch.arange(4.0)}
    ckpt.save(state)
    raw = torch.load(path, weights_only=True)
    assert raw.keys() == {"format", "fingerprint", "state"}
    assert (
        raw["format"] == CHECKPOINT_FORMAT == "mnist-pipeline-checkpoint/1" and raw["fingerprint"] == "fp-1"
    )
    assert raw["state"]["epoch"] == 3 and torch.equal(raw["state"]["weights"], torch.arange(4.0))
    loaded = FileCheckpointer(path, "fp-1").load()
    assert loaded is not None and loaded.keys() == {"epoch", "weights"} and loaded["epoch"] == 3
    assert torch.equal(loaded["weights"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]
    assert capsys.readouterr() == ("", "")


def test_checkpointer_remove_is_idempotent(tmp_path: Path) -> None:
    ckpt = FileCheckpointer(tmp_path / "ckpt.pt", "fp")
    ckpt.remove()
    ckpt.save({"epoch": 1})
    ckpt.remove()
    assert not ckpt.path.exists()
    ckpt.remove()
    assert list(tmp_path.iterdir()) == []


def test_checkpointer_ignores_other_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ckpt.pt"
    FileCheckpointer(path, "old").save({"epoch": 1})
    assert FileCheckpointer(path, "new").load() is None
    assert capsys.readouterr() == (
        "",
        f"ignoring {path}: made with other params, data or code; starting fresh\n",
    )
    assert path.exists()  # left for the stage to overwrite


@pytest.mark.parametrize(
    "content", [[1, 2], {"format": MODEL_FORMAT, "fingerprint": "fp", "state": {}}, {"state": {}}]
)
def test_checkpointer_ignores_what_is_not_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object
) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(content, path)
    assert FileCheckpointer(path, "fp").load() is None
    assert capsys.readouterr() == ("", f"ignoring {path}: not a training checkpoint; starting fresh\n")


@pytest.mark.parametrize(("content", "error"), [(b"", "EOFError"), (b"PK\x03\x04junk", "RuntimeError")])
def test_checkpointer_ignores_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, error: str
) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(content)
    assert FileCheckpointer(path, "fp").load() is None
    assert capsys.readouterr() == ("", f"ignoring unreadable checkpoint {path} ({error}); starting fresh\n")


def test_checkpointer_never_runs_code_in_a_pickle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch would load unsafely by default under this variable unless the caller asks for weights_only itself
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker, path = tmp_path / "pwned", tmp_path / "ckpt.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": "fp", "state": Payload(marker)}, path)
    assert FileCheckpointer(path, "fp").load() is None
    assert not marker.exists()
    assert capsys.readouterr() == (
        "",
        f"ignoring unreadable checkpoint {path} (UnpicklingError); starting fresh\n",
    )


# --- model files --------------------------------------------------------------------------------------------


def record(arch: str = "cnn2", weights: dict | None = None, **changes: Any) -> ModelFile:
    """A model file's record with fresh weights of arch."""
    fields = dict(
        name="mine",
        arch=arch,
        weights=build_model(arch).state_dict() if weights is None else weights,
        preprocessing=Preprocessing(mean=0.5, std=0.5, channels_last=False),
        recipe={"arch": arch, "lr": 0.1},
        seed=3,
        data={"train": "a" * 32, "val": "b" * 32},
        environment={"torch": "x", "cpu_flags": {"avx2": True}},
        epochs_run=3,
        best_epoch=2,
        test_shifts=True,
        val_scores={"plain": {"accuracy": 0.5, "loss": 1.0}, "shifted": {"accuracy": 0.6, "loss": 0.9}},
    )
    return ModelFile(**{**fields, **changes})


def raw_file(path: Path, redigest: bool = True, **changes: Any) -> Path:
    """A model file whose stored dict has the given keys changed (None: removed), its digest made anew
    (as a writer with that bug would) unless redigest is False (a copy changed after it was written)."""
    saved = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del saved[key]
        else:
            saved[key] = value
    if redigest and isinstance(saved.get("weights"), dict) and "digest" in saved:
        saved["digest"] = artifacts.content_digest(saved)
    torch.save(saved, path)
    return path


FIX = "(fix: train it with `dvc repro train@m`, or fetch it with `dvc pull` or `dvc artifacts get`)"


def repair(made_by: str = "train@m") -> str:
    return (
        f"(fix: `make verify` names the bad copy and its DVC cache object; remove both, then `make pull` or "
        f"`dvc repro -f {made_by}`)"
    )


def test_round_trip_keeps_every_field_and_the_weights(tmp_path: Path) -> None:
    # torch.__version__ is a str subclass, which a weights_only load refuses: it is saved as a str
    original = record(environment={"torch": torch.__version__, "cpu_flags": {"avx2": True}})
    original.save(tmp_path / "m.pt")
    loaded = ModelFile.load(tmp_path / "m.pt")
    assert loaded.weights.keys() == original.weights.keys()
    assert all(torch.equal(loaded.weights[k], original.weights[k]) for k in original.weights)
    assert dataclasses.replace(loaded, weights={}) == dataclasses.replace(original, weights={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain values: no class of ours is pickled
    assert raw["format"] == MODEL_FORMAT == "mnist-pipeline-model/4"
    assert raw["preprocessing"] == {"mean": 0.5, "std": 0.5, "channels_last": False}
    assert set(raw) == {"format", "digest", *(f.name for f in dataclasses.fields(ModelFile))}
    assert raw["digest"] == artifacts.content_digest(raw)


def test_build_and_load_model_give_the_saved_weights(tmp_path: Path) -> None:
    original = record()
    original.save(tmp_path / "m.pt")
    model, loaded = load_model(tmp_path / "m.pt")
    assert loaded.name == "mine" and loaded.seed == 3
    assert all(
        torch.equal(a, b) for a, b in zip(original.weights.values(), model.state_dict().values(), strict=True)
    )
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}


def test_build_without_a_device_builds_on_the_cpu() -> None:
    model = record().build()
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_model_is_built_in_its_memory_format(tmp_path: Path, channels_last: bool) -> None:
    record(preprocessing=Preprocessing(0.5, 0.5, channels_last)).save(tmp_path / "m.pt")
    model, loaded = load_model(tmp_path / "m.pt")
    assert loaded.preprocessing.channels_last is channels_last
    conv_weights = [p for p in model.parameters() if p.dim() == 4]
    assert conv_weights
    if channels_last:
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
        assert not all(w.is_contiguous() for w in conv_weights)
    else:
        assert all(w.is_contiguous() for w in conv_weights)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_load_reads_on_the_cpu_and_moves_the_model_to_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: Any
) -> None:
    record("mlp").save(tmp_path / "m.pt")
    loads: list[dict[str, Any]] = []
    moves: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    real_load = torch.load

    def spy_load(path: Path, **kwargs: Any) -> Any:
        loads.append(kwargs)
        return real_load(path, **kwargs)

    def spy_build(arch: str) -> torch.nn.Module:
        model = build_model(arch)
        real_to = model.to

        def spy_to(*args: Any, **kwargs: Any) -> torch.nn.Module:
            moves.append((args, kwargs))
            return real_to(*args, **kwargs)

        model.to = spy_to  # type: ignore[method-assign]
        return model

    # a CPU-only test machine cannot tell devices apart by the result, so watch the calls
    monkeypatch.setattr(artifacts.torch, "load", spy_load)
    monkeypatch.setattr(artifacts, "build_model", spy_build)
    model, _ = load_model(tmp_path / "m.pt", device)
    assert loads == [{"map_location": "cpu", "weights_only": True}]
    assert moves == [((device,), {})]


@pytest.mark.parametrize("key", ["seed", "data", "environment", "preprocessing", "weights", "best_epoch"])
def test_a_missing_or_mistyped_field(tmp_path: Path, key: str) -> None:
    record().save(tmp_path / "m.pt")
    path = raw_file(tmp_path / "m.pt", **{key: None})
    with pytest.raises(ModelFileError) as info:
        ModelFile.load(path, made_by="train@mine")
    assert (
        str(info.value) == f"{path} lacks or mistypes {key} (fix: retrain it with `dvc repro -f train@mine`)"
    )
    path = raw_file(path, **{key: "text"})
    with pytest.raises(ModelFileError, match=f"lacks or mistypes {key} "):
        ModelFile.load(path)


def test_several_wrong_fields_are_listed_together(tmp_path: Path) -> None:
    # one message that names every bad field, in _FIELDS' order, spares a retrain per field
    record().save(tmp_path / "m.pt")
    path = raw_file(tmp_path / "m.pt", data=None, seed="3")
    with pytest.raises(ModelFileError) as info:
        ModelFile.load(path, made_by="train@mine")
    assert str(info.value) == (
        f"{path} lacks or mistypes seed, data (fix: retrain it with `dvc repro -f train@mine`)"
    )


def test_a_malformed_preprocessing_record(tmp_path: Path) -> None:
    record().save(tmp_path / "m.pt")
    path = raw_file(tmp_path / "m.pt", preprocessing={"mean": 0.5})
    with pytest.raises(ModelFileError, match=r"m.pt has a malformed preprocessing record \(fix: retrain"):
        ModelFile.load(path)


def test_an_older_format_says_to_retrain(tmp_path: Path) -> None:
    record().save(tmp_path / "m.pt")
    path = raw_file(tmp_path / "m.pt", format="mnist-pipeline-model/1")
    with pytest.raises(ModelFileError) as info:
        ModelFile.load(path, made_by="train@mine")
    assert str(info.value) == (
        f"{path} is a mnist-pipeline-model/1 file; this version reads mnist-pipeline-model/4 "
        "(fix: retrain it with `dvc repro -f train@mine`)"
    )


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    record("lenet", weights=build_model("cnn2").state_dict()).save(tmp_path / "m.pt")
    try:
        build_model("lenet").load_state_dict(build_model("cnn2").state_dict())
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
    assert len(lines) > 1
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "m.pt")
    assert str(info.value) == (
        f"model 'mine': weights do not fit architecture 'lenet' ({lines[0]}) "
        "(fix: retrain it with `dvc repro -f train@mine`)"
    )


def test_unknown_architecture(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    record(weights={}).save(path)
    raw_file(path, arch="alexnet")
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert sorted(MODELS) == ["bnnet", "cnn2", "cnn6", "lenet", "mlp", "resnet18"]
    assert str(info.value) == (
        f"'alexnet' in {path} is not a registered architecture (fix: name one of bnnet, cnn2, cnn6, lenet, "
        'mlp, resnet18, or add src/mnist_pipeline/architectures/alexnet.py as the README\'s "Adding a model" '
        "says)"
    )


@pytest.mark.parametrize("content", [[1, 2], {"format": CHECKPOINT_FORMAT, "arch": "mlp"}])
def test_other_torch_files_are_not_ours(tmp_path: Path, content: object) -> None:
    path = tmp_path / "m.pt"
    torch.save(content, path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert (
        str(info.value)
        == f"{path} is not a model file of this project (no 'mnist-pipeline-model/4' header) {FIX}"
    )


def test_plain_state_dict_is_not_ours(tmp_path: Path) -> None:
    torch.save(build_model("cnn2").state_dict(), tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="not a model file of this project"):
        load_model(tmp_path / "m.pt")


def test_unreadable_file_names_the_first_line_of_the_error(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"PK\x03\x04junk")
    first = first_line_of_load_error(path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert (
        str(info.value)
        == f"{path} is not a model file of this project, or a corrupt copy of one: torch cannot read it "
        f"({first}) {repair()}"
    )


def test_empty_file_names_the_error_type(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert (
        str(info.value)
        == f"{path} is not a model file of this project, or a corrupt copy of one: torch cannot read it "
        f"(EOFError) {repair()}"
    )


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_with_code_is_refused_in_our_words_and_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    # torch would load unsafely by default under this variable unless the caller asks for weights_only itself
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker, path = tmp_path / "pwned", tmp_path / "m.pt"
    if writer == "torch":
        torch.save({"format": "x", "payload": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert not marker.exists()
    assert str(info.value) == (
        f"{path} is not a model file of this project: it holds Python objects, "
        "not just tensors and values; it was "
        f"not loaded and must not be loaded with weights_only=False, which runs any code it carries {FIX}"
    )
    # torch's own advice (retry with weights_only=False) is not passed on
    assert "weights_only=False" not in str(info.value).replace(
        "must not be loaded with weights_only=False", ""
    )


def test_the_ensembles_json_is_named_with_the_way_to_use_it(tmp_path: Path) -> None:
    path = tmp_path / "ensemble.json"
    ensemble = {"members": {"bnnet": 0.75, "cnn2": 0.25}, "temperatures": {"bnnet": 0.4, "cnn2": 0.9}}
    path.write_text(json.dumps(ensemble, indent=2) + "\n")  # as the ensemble stage writes it
    with pytest.raises(ModelFileError) as info:
        ModelFile.load(path)
    assert str(info.value) == (
        f"{path} is not a model file: it is the ensemble stage's JSON record of the members it combines and "
        "their weights, which holds no weights of its own (fix: classify images with the ensemble by "
        f"`make predict MODEL=ensemble IMAGES=...` or `python -m mnist_tools.predict --ensemble "
        f"--members-file {path} ...`, or load one member's model file, e.g. {tmp_path / 'bnnet.pt'})"
    )


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b'  {"lr": 0.1}', "JSON"),
        (b"[1, 2]\n", "JSON"),
        (b"hello world", "a file that starts with b'hello world'"),  # torch itself raised KeyError: 101
        (b"epoch,val_acc\n1,0.98\n", "a file that starts with b'epoch,val_acc\\n1,'"),
        (
            b"\x89PNG\r\n\x1a\n" + bytes(40),
            "a file that starts with b'\\x89PNG\\r\\n\\x1a\\n" + "\\x00" * 8 + "'",
        ),
        (b"{not json", "a file that starts with b'{not json'"),
    ],
)
def test_files_that_torch_did_not_write_are_named_for_what_they_are(
    tmp_path: Path, content: bytes, what: str
) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == (
        f"{path} is not a model file of this project: it is {what}, not a file torch.save wrote {FIX}"
    )


def test_missing_file_names_the_stage_that_writes_it(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "nope.pt", made_by="train@nope")
    assert str(info.value) == (
        f"{tmp_path / 'nope.pt'} not found: stage train@nope writes it (fix: train it with "
        "`dvc repro train@nope`, or fetch it with `dvc pull` or `dvc artifacts get`)"
    )


def test_missing_file_without_made_by_names_the_default_stage(tmp_path: Path) -> None:
    # callers that do not know the model's name still get a runnable hint with a placeholder to fill in
    with pytest.raises(ModelFileError) as info:
        ModelFile.load(tmp_path / "nope.pt")
    assert str(info.value) == f"{tmp_path / 'nope.pt'} not found: stage train@nope writes it " + FIX.replace(
        "train@m`", "train@nope`"
    )


# --- a model file as a PyTorch user gets it ---------------------------------------------------------------


@pytest.mark.parametrize(("arch", "channels_last"), [("mlp", False), ("cnn2", True)])
def test_module_is_the_built_model_in_eval_mode(arch: str, channels_last: bool) -> None:
    mine = record(arch, preprocessing=Preprocessing(0.5, 0.5, channels_last))  # mlp: BatchNorm, cnn2: convs
    model = mine.module()
    assert isinstance(model, torch.nn.Module) and not any(m.training for m in model.modules())
    assert model.state_dict().keys() == mine.weights.keys()
    assert all(torch.equal(model.state_dict()[k], w) for k, w in mine.weights.items())
    built = mine.build()
    assert [p.stride() for p in model.parameters()] == [p.stride() for p in built.parameters()]
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}


def digits(count: int, seed: int = 0) -> torch.Tensor:
    """(count, 28, 28) uint8 noise images."""
    return torch.randint(
        0, 256, (count, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize(
    ("arch", "test_shifts", "channels_last"), [("cnn2", True, True), ("mlp", False, False)]
)
def test_predict_gives_the_probabilities_of_the_predict_tool(
    tmp_path: Path, arch: str, test_shifts: bool, channels_last: bool
) -> None:
    from mnist_tools.predict import probabilities  # the tool's own path: load_model, predict_logits, softmax

    torch.manual_seed(1)
    preprocessing = Preprocessing(mean=0.1307, std=0.3081, channels_last=channels_last)
    record(arch, test_shifts=test_shifts, preprocessing=preprocessing).save(tmp_path / "m.pt")
    images = digits(9)
    expected = probabilities([load_model(tmp_path / "m.pt")], images)
    mine = ModelFile.load(tmp_path / "m.pt")
    probs = mine.predict(images)
    assert probs.shape == (9, 10) and probs.dtype == torch.float32
    assert torch.equal(probs, expected)  # bit for bit
    assert torch.equal(
        mine.predict(images[:, None], mine.module()), expected
    )  # (N, 1, 28, 28), a built model
    assert torch.allclose(probs.sum(1), torch.ones(9))
    plain = torch.softmax(mine.module()(mine.preprocessing.input(images.clone())).detach(), 1)
    assert torch.allclose(probs, plain) is not test_shifts  # the file's choice of test-time shifts is applied


def test_predict_works_batch_by_batch() -> None:
    mine = record("cnn2")
    images = digits(7, seed=2)
    whole = mine.predict(images)
    assert torch.allclose(mine.predict(images, batch_size=3), whole, atol=1e-6)
    assert mine.predict(images[:0]).shape == (0, 10)


@pytest.mark.parametrize(
    "images",
    [
        torch.rand(2, 28, 28),  # floats in [0, 1]
        torch.zeros(2, 32, 32, dtype=torch.uint8),
        torch.zeros(28, 28, dtype=torch.uint8),  # one image without its batch dimension
        torch.zeros(2, 3, 28, 28, dtype=torch.uint8),
    ],
)
def test_predict_names_the_images_it_takes(images: torch.Tensor) -> None:
    with pytest.raises(PipelineError) as info:
        record("mlp").predict(images)
    assert str(info.value) == (
        f"model 'mine' takes (N, 28, 28) or (N, 1, 28, 28) uint8 images, not {tuple(images.shape)} "
        f"{images.dtype} (fix: pixels 0-255 as MNIST has them, e.g. (x * 255).round().to(torch.uint8) for "
        "floats in [0, 1])"
    )


# --- a model file checks itself -----------------------------------------------------------------------------


def flip_a_weight_byte(path: Path, tensor: torch.Tensor) -> None:
    """Flip one bit inside a tensor's stored bytes, as a bad disk or cache copy would."""
    data = bytearray(path.read_bytes())
    at = data.find(tensor.contiguous().numpy().tobytes()[:64])
    assert at > 0, "the tensor's bytes are stored as they are"
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_weights_is_refused_naming_the_repair(tmp_path: Path) -> None:
    original = record()
    path = tmp_path / "m.pt"
    original.save(path)
    flip_a_weight_byte(path, next(iter(original.weights.values())))
    torch.load(path, weights_only=True)  # torch itself reads it without complaint
    with pytest.raises(ModelFileError) as info:
        load_model(path, made_by="train@mine")
    assert str(info.value) == (
        f"{path} is corrupt: its contents no longer match the digest it was written with "
        f"{repair('train@mine')}"
    )


@pytest.mark.parametrize("changes", [{"seed": 4}, {"test_shifts": False}, {"recipe": {"arch": "cnn2"}}])
def test_a_value_changed_after_writing_is_refused(tmp_path: Path, changes: dict[str, Any]) -> None:
    record().save(tmp_path / "m.pt")
    path = raw_file(tmp_path / "m.pt", redigest=False, **changes)
    with pytest.raises(ModelFileError, match=r"m.pt is corrupt: .* `dvc repro -f train@m`\)$"):
        ModelFile.load(path)


def test_the_digest_covers_each_tensors_name_dtype_and_shape() -> None:
    saved = {"weights": {"a": torch.zeros(2, 3)}, "seed": 1}
    base = artifacts.content_digest(saved)
    assert artifacts.content_digest({**saved, "digest": "x"}) == base  # the digest is not part of itself
    for weights in ({"b": torch.zeros(2, 3)}, {"a": torch.zeros(3, 2)}, {"a": torch.zeros(2, 3).double()}):
        assert artifacts.content_digest({**saved, "weights": weights}) != base
    assert artifacts.content_digest({**saved, "seed": 2}) != base


def test_a_file_without_its_digest_says_to_retrain(tmp_path: Path) -> None:
    record().save(tmp_path / "m.pt")
    path = raw_file(tmp_path / "m.pt", digest=None)
    with pytest.raises(ModelFileError) as info:
        ModelFile.load(path, made_by="train@mine")
    assert (
        str(info.value) == f"{path} lacks or mistypes digest (fix: retrain it with `dvc repro -f train@mine`)"
    )
