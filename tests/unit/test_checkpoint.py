"""Model files and training checkpoints: round trip, digests, atomic writes, and refusal of anything else."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from mnist_pipeline import checkpoint
from mnist_pipeline.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    FileCheckpointer,
    ModelFileError,
    file_digest,
    fingerprint,
    load_model,
    package_digest,
    save_model,
)
from mnist_pipeline.models import MODELS, build_model

INFO = {"norm_mean": 0.5, "norm_std": 0.5, "channels_last": False, "epochs_run": 3, "best_epoch": 2}


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


# --- fingerprint, file_digest, package_digest -------------------------------------------------------------------


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


class ReadSpy:
    """Wraps a binary file: records read sizes and fails a read after end of file was already reported."""

    def __init__(self, f: io.BufferedReader, sizes: list[int | None]) -> None:
        self.f, self.sizes, self.at_eof = f, sizes, False

    def read(self, size: int | None = -1) -> bytes:
        assert not self.at_eof, "read again after end of file"
        self.sizes.append(size)
        chunk = self.f.read(size)
        self.at_eof = chunk == b""
        return chunk

    def __enter__(self) -> ReadSpy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


@pytest.mark.parametrize("size", [0, 5, (1 << 20) - 1, 1 << 20, (5 << 20) // 2])
def test_file_digest_is_md5_of_the_bytes_read_in_chunks_of_1_mib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    sizes: list[int | None] = []
    modes: list[str] = []

    def spy_open(file: Path, mode: str = "r") -> ReadSpy:
        modes.append(mode)
        return ReadSpy(open(file, mode), sizes)

    monkeypatch.setattr(checkpoint, "open", spy_open, raising=False)
    assert file_digest(path) == hashlib.md5(data).hexdigest()
    assert modes == ["rb"]
    # bounded memory: never the whole file at once
    assert sizes == [1 << 20] * (-(-size // (1 << 20)) + 1)  # the last read finds end of file
    monkeypatch.undo()
    assert file_digest(path) == hashlib.md5(data).hexdigest()


def test_file_digest_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "nope")


def test_package_digest_covers_each_module_by_name_and_content(monkeypatch: pytest.MonkeyPatch) -> None:
    # a digest that kept reading past end of file would hang instead of failing
    monkeypatch.setattr(checkpoint, "open", lambda file, mode="r": ReadSpy(open(file, mode), []), raising=False)
    root = Path(checkpoint.__file__).parent
    parts = [[p.name, hashlib.md5(p.read_bytes()).hexdigest()] for p in sorted(root.glob("*.py"))]
    assert len(parts) > 5 and ["checkpoint.py", file_digest(root / "checkpoint.py")] in parts
    expected = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    assert package_digest() == expected
    assert package_digest() == expected


# --- atomic writes ----------------------------------------------------------------------------------------------


def test_save_writes_beside_the_target_then_replaces_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deep" / "er" / "ckpt.pt"
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(src: Path, dst: Path) -> None:
        assert Path(src).is_file() and not Path(dst).exists()
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy_replace)
    FileCheckpointer(path, "fp").save({"epoch": 1})
    assert replaced == [(tmp_path / "deep" / "er" / "ckpt.pt.tmp", path)]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.pt"
    save_model(path, "mlp", {}, INFO)
    before = path.read_bytes()

    def half_write(obj: Any, f: Path) -> None:
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, "mlp", {}, {**INFO, "epochs_run": 4})
    assert path.read_bytes() == before


# --- FileCheckpointer -------------------------------------------------------------------------------------------


def test_checkpointer_round_trip_and_file_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a" / "b" / "ckpt.pt"
    ckpt = FileCheckpointer(str(path), "fp-1")
    assert ckpt.path == path and isinstance(ckpt.path, Path) and ckpt.run_fingerprint == "fp-1"
    assert ckpt.load() is None
    state = {"epoch": 3, "weights": torch.arange(4.0)}
    ckpt.save(state)
    raw = torch.load(path, weights_only=True)
    assert raw.keys() == {"format", "fingerprint", "state"}
    assert raw["format"] == CHECKPOINT_FORMAT == "mnist-pipeline-checkpoint/1" and raw["fingerprint"] == "fp-1"
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
    assert capsys.readouterr() == ("", f"ignoring {path}: made with other params, data or code; starting fresh\n")
    assert path.exists()  # left for the stage to overwrite


@pytest.mark.parametrize("content", [[1, 2], {"format": MODEL_FORMAT, "fingerprint": "fp", "state": {}}, {"state": {}}])
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
    assert capsys.readouterr() == ("", f"ignoring unreadable checkpoint {path} (UnpicklingError); starting fresh\n")


# --- model files ------------------------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    model = build_model("cnn2")
    save_model(tmp_path / "m.pt", "cnn2", model.state_dict(), INFO)
    loaded, info = load_model(tmp_path / "m.pt")
    assert info == {"arch": "cnn2", **INFO}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert model.state_dict().keys() == loaded.state_dict().keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == MODEL_FORMAT == "mnist-pipeline-model/1" and raw["arch"] == "cnn2"


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_is_restored(tmp_path: Path, channels_last: bool) -> None:
    save_model(tmp_path / "m.pt", "cnn2", build_model("cnn2").state_dict(), {**INFO, "channels_last": channels_last})
    model, info = load_model(tmp_path / "m.pt")
    assert info["channels_last"] is channels_last
    conv_weights = [p for p in model.parameters() if p.dim() == 4]
    assert conv_weights
    if channels_last:
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
        assert not all(w.is_contiguous() for w in conv_weights)
    else:
        assert all(w.is_contiguous() for w in conv_weights)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_load_maps_tensors_and_moves_the_model_to_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: Any
) -> None:
    save_model(tmp_path / "m.pt", "mlp", build_model("mlp").state_dict(), INFO)
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
    monkeypatch.setattr(checkpoint.torch, "load", spy_load)
    monkeypatch.setattr(checkpoint, "build_model", spy_build)
    model, _ = load_model(tmp_path / "m.pt", device)
    assert loads == [{"map_location": device, "weights_only": True}]
    assert moves == [((device,), {})]
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}


def test_load_defaults_to_cpu(tmp_path: Path) -> None:
    save_model(tmp_path / "m.pt", "mlp", build_model("mlp").state_dict(), INFO)
    model, _ = load_model(tmp_path / "m.pt")
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}


def test_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(path, "cnn2", build_model("cnn2").state_dict(), {"norm_mean": 0.5, "epochs_run": 1})
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == f"{path} lacks best_epoch, channels_last, norm_std; retrain it with `dvc repro -f train@<model>`"


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(path, "lenet", build_model("cnn2").state_dict(), INFO)
    try:
        build_model("lenet").load_state_dict(build_model("cnn2").state_dict())
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
    assert len(lines) > 1
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: weights do not fit architecture 'lenet' ({lines[0]})"


def test_unknown_architecture(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(path, "alexnet", {}, INFO)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert sorted(MODELS) == ["bnnet", "cnn2", "cnn6", "lenet", "mlp", "resnet18"]
    assert str(info.value) == f"{path} names unknown architecture 'alexnet'; valid names: bnnet, cnn2, cnn6, lenet, mlp, resnet18"


@pytest.mark.parametrize("content", [[1, 2], {"format": CHECKPOINT_FORMAT, "arch": "mlp"}])
def test_other_torch_files_are_not_ours(tmp_path: Path, content: object) -> None:
    path = tmp_path / "m.pt"
    torch.save(content, path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == f"{path} is not a model file of this project (no 'mnist-pipeline-model/1' header)"


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
    assert str(info.value) == f"{path} is not a model file of this project (refused to load it: {first})"


def test_empty_file_names_the_error_type(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == f"{path} is not a model file of this project (refused to load it: EOFError)"


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_with_code_is_refused_and_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    # torch would load unsafely by default under this variable unless the caller asks for weights_only itself
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker, path = tmp_path / "pwned", tmp_path / "m.pt"
    if writer == "torch":
        torch.save({"format": "x", "payload": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelFileError, match=r"is not a model file of this project \(refused to load it: "):
        load_model(path)
    assert not marker.exists()


def test_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "nope.pt")
    assert str(info.value) == f"{tmp_path / 'nope.pt'} not found; train it with `dvc repro train@<model>`"
