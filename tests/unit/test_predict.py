"""Predict: MNIST-style preprocessing of arbitrary images and a CLI that survives bad files."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image, ImageDraw, ImageFont

from mnist_pipeline.artifacts import ModelFile, load_model
from mnist_pipeline.cli import run
from mnist_pipeline.ensembling import EnsembleFile
from mnist_pipeline.inference import Preprocessing
from mnist_pipeline.models import build_model
from mnist_tools import predict as predict_module
from mnist_tools.predict import ImageError, classify, load_image, predict_paths, to_mnist

ROOT = Path(__file__).resolve().parents[2]


def render_digit(
    digit: int,
    size: int = 200,
    dark_on_light: bool = True,
    color: str = "black",
    offset: tuple[int, int] = (0, 0),
) -> Image.Image:
    """A digit drawn with Pillow's built-in font on a square canvas."""
    background, ink = ("white", color) if dark_on_light else ("black", "white")
    image = Image.new("RGB", (size, size), background)
    font = ImageFont.load_default(size=size * 0.6)
    ImageDraw.Draw(image).text(
        (size / 2 + offset[0], size / 2 + offset[1]), str(digit), fill=ink, font=font, anchor="mm"
    )
    return image


def center_of_mass(x: torch.Tensor) -> tuple[float, float]:
    x = x.float()
    ys, xs = torch.arange(28).float(), torch.arange(28).float()
    return float((x.sum(1) * ys).sum() / x.sum()), float((x.sum(0) * xs).sum() / x.sum())


def test_digit_is_cropped_scaled_and_centred(tmp_path: Path) -> None:
    path = tmp_path / "seven.png"
    render_digit(7, size=300, offset=(60, -50)).save(path)
    x = load_image(path)
    assert x.shape == (28, 28) and x.dtype == torch.uint8
    rows, cols = torch.nonzero(x.any(1)).flatten(), torch.nonzero(x.any(0)).flatten()
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20
    cy, cx = center_of_mass(x)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert x[0].sum() == 0 and x[:, 0].sum() == 0  # background is black


def test_polarity_and_colour_do_not_matter(tmp_path: Path) -> None:
    variants = {
        "dark.png": render_digit(3),
        "light.png": render_digit(3, dark_on_light=False),
        "blue.jpg": render_digit(3, color="navy"),
    }
    digits = []
    for name, image in variants.items():
        image.save(tmp_path / name)
        digits.append(load_image(tmp_path / name).float())
    assert (digits[0] - digits[1]).abs().mean() < 8 and (digits[0] - digits[2]).abs().mean() < 12


def test_transparent_png(tmp_path: Path) -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(50, 10), (50, 90)], fill=(0, 0, 0, 255), width=8)
    image.save(tmp_path / "one.png")
    x = load_image(tmp_path / "one.png")
    assert x[4:24, 12:16].float().mean() > 100 and x[:, :8].sum() == 0


def test_blank_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="no digit found"):
        to_mnist(torch.ones(50, 50))


def save_model(
    path: Path,
    arch: str,
    weights: dict[str, torch.Tensor],
    mean: float,
    std: float,
    test_shifts: bool = False,
) -> None:
    """A model file as the train stage writes it, for untrained weights."""
    ModelFile(
        name=path.stem,
        arch=arch,
        weights=weights,
        preprocessing=Preprocessing(mean, std, channels_last=False),
        recipe={"arch": arch},
        seed=0,
        data={},
        environment={},
        epochs_run=1,
        best_epoch=1,
        test_shifts=test_shifts,
        val_scores={},
    ).save(path)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "lenet.pt"
    save_model(path, "lenet", build_model("lenet").state_dict(), 0.5, 0.5)
    return path


def test_bad_files_are_named_and_the_rest_classified(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    good = tmp_path / "good.png"
    render_digit(4).save(good)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    Image.new("1", (6000, 6000), 1).save(tmp_path / "bomb.png")  # 36 Mpixel in a few kB
    bad = ["notes.txt", "empty.png", "blank.png", "bomb.png", "missing.png"]
    code, out, err = predict_here(
        monkeypatch, capsys, "--model", str(model_file), str(good), *(str(tmp_path / b) for b in bad)
    )
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{good}\t")
    errors = err.splitlines()
    assert len(errors) == len(bad)
    for name, line in zip(bad, errors, strict=True):
        assert line.startswith(f"error: {tmp_path / name}: ")
    assert "decompression bomb" in errors[3] and "no such file" in errors[4] and "no digit found" in errors[2]


def test_top_and_json(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "five.png"
    render_digit(5).save(path)
    code, out, err = predict_here(
        monkeypatch, capsys, "--model", str(model_file), "--top", "3", "--json", str(path)
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["path"] == str(path) and len(record["predictions"]) == 3
    probabilities = [p["probability"] for p in record["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    _, plain, _ = predict_here(monkeypatch, capsys, "--model", str(model_file), "--top", "3", str(path))
    assert plain.count("(") == 3


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--top", "11"], "--top 11 (TOP=): there are 10 digits (fix: a number from 1 to 10)"),
        (["--top", "0"], "--top 0 (TOP=): there are 10 digits (fix: a number from 1 to 10)"),
        (["--batch-size", "0"], "--batch-size 0: no images per pass (fix: 1 or more)"),
    ],
)
def test_an_out_of_range_number_is_one_line_without_the_usage(
    tmp_path: Path,
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    option: list[str],
    error: str,
) -> None:
    code, out, err = predict_here(monkeypatch, capsys, "--model", str(model_file), *option, "x.png")
    assert (code, out, err) == (2, "", f"error: {error}\n")


def test_not_a_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "x.png"
    render_digit(1).save(path)
    (tmp_path / "model.pt").write_bytes(b"garbage")
    code, _, err = predict_here(monkeypatch, capsys, "--model", str(tmp_path / "model.pt"), str(path))
    assert code == 2 and "is not a model file of this project" in err


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (
            "lenet5",
            "models/lenet5.pt not found: params.yaml has no model 'lenet5', so no stage train@lenet5 ",
        ),
        (
            "cnn2",
            "models/cnn2.pt not found: stage train@cnn2 writes it (fix: train it with `dvc repro train@cnn2`",
        ),
    ],
)
def test_a_missing_or_unknown_model_names_its_stage_and_the_valid_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, name: str, problem: str
) -> None:
    image = tmp_path / "three.png"
    render_digit(3, size=64).save(image)
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)  # params.yaml here, models/ absent: as `make predict MODEL=...` runs it
    code, out, err = predict_here(monkeypatch, capsys, "--model", f"models/{name}.pt", str(image))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"error: {problem}") and "<model>" not in err
    names = [*yaml.safe_load((ROOT / "params.yaml").read_text())["models"], "ensemble"]
    assert f"{', '.join(names[:-1])} or ensemble)" in err


def test_a_bad_model_file_of_a_known_model_names_its_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    image = tmp_path / "three.png"
    render_digit(3, size=64).save(image)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mlp.pt").write_bytes(b"garbage")
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)
    code, _, err = predict_here(monkeypatch, capsys, "--model", "models/mlp.pt", str(image))
    assert code == 2 and "(fix: train it with `dvc repro train@mlp`" in err


# --- batches, folders and patterns, the ensemble, output formats --------------------------------------------


def predict_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str
) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of the CLI run in this process
    (a subprocess costs seconds of torch import)."""
    monkeypatch.setattr(sys, "argv", ["predict", *args])
    with pytest.raises(SystemExit) as stopped:
        run(predict_module.main)
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


def paths_of(stdout: str) -> list[str]:
    return [line.split("\t")[0] for line in stdout.splitlines()]


def test_folders_and_patterns_expand_in_input_order(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder, scans = tmp_path / "digits", tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    scans.mkdir()
    for name, digit in [("b.png", 2), ("a.PNG", 1), ("c.jpeg", 3), ("sub/d.png", 4), ("._a.png", 5)]:
        render_digit(digit, size=64).save(folder / name, format="PNG" if "png" in name.lower() else "JPEG")
    (folder / "notes.txt").write_text("not an image")
    for name in ["y.png", "x.png", "z.gif"]:
        render_digit(7, size=64).save(scans / name)
    single = tmp_path / "one.png"
    render_digit(1, size=64).save(single)
    pattern = str(scans / "*.png")  # as a quoted pattern reaches Python: unexpanded
    code, out, err = predict_here(
        monkeypatch, capsys, "--model", str(model_file), pattern, str(folder), str(single)
    )
    assert (code, err) == (0, "")
    assert paths_of(out) == [
        str(scans / "x.png"),
        str(scans / "y.png"),
        str(folder / "a.PNG"),
        str(folder / "b.png"),
        str(folder / "c.jpeg"),
        str(single),
    ]
    code, out, _ = predict_here(
        monkeypatch, capsys, "--model", str(model_file), str(tmp_path / "**" / "d.png")
    )
    assert code == 0 and paths_of(out) == [str(folder / "sub" / "d.png")]


@pytest.mark.parametrize("kind", ["folder", "pattern"])
def test_a_folder_or_pattern_without_images_is_one_error(
    kind: str,
    tmp_path: Path,
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    name = str(empty) if kind == "folder" else str(empty / "*.png")
    good = tmp_path / "good.png"
    render_digit(4, size=64).save(good)
    code, out, err = predict_here(monkeypatch, capsys, "--model", str(model_file), str(good), name)
    assert code == 2 and out == ""
    assert (
        err == f"error: {kind} {name} has no image files (.png .jpg .jpeg .bmp .gif .tif .tiff .webp) "
        "(fix: check the path)\n"
    )


def test_batches_take_one_forward_pass_each_and_match_one_at_a_time(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digits = torch.randint(
        0, 256, (1000, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    bad = {10, 500, 999}  # unreadable files keep their place and do not count towards a batch

    def fake_load(path: Path) -> torch.Tensor:  # files would cost seconds; the batching is what is tested
        i = int(path.name)
        if i in bad:
            raise ImageError(f"{path}: unreadable")
        return digits[i]

    monkeypatch.setattr(predict_module, "load_image", fake_load)
    model, info = load_model(model_file)
    passes = []
    model.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))
    paths = [Path(str(i)) for i in range(1000)]
    results = list(predict_paths(paths, [(model, info)], 256, 3))
    assert passes == [256, 256, 256, 229]  # 997 readable images
    assert [path for path, _ in results] == paths
    for i, (_, ranked) in enumerate(results):
        if i in bad:
            assert isinstance(ranked, ImageError)
            continue
        alone = dict(
            classify(model, info, digits[i : i + 1], 10)[0]
        )  # digit -> probability, whatever the ties
        assert [p for _, p in ranked] == pytest.approx([alone[d] for d, _ in ranked], abs=1e-5)
        assert ranked[0][1] == pytest.approx(max(alone.values()), abs=1e-5)


@pytest.fixture
def ensemble_dir(tmp_path: Path) -> Path:
    """models/ensemble.json choosing two of three confident, differently normalised untrained models."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "params.yaml").write_text(
        "models:\n  lenet: {arch: lenet}\n  mlp: {arch: mlp}\n  cnn2: {arch: cnn2}\n"
    )
    EnsembleFile(
        members={"lenet": 0.75, "mlp": 0.25},
        temperatures={"lenet": 2.0, "mlp": 0.5},
        val_accuracy=0.5,
        rule="chosen by the test",
        method="by hand",
        why="a test needs it",
        alternative={},
        rounds=[],
    ).save(root / "models" / "ensemble.json")
    for seed, (name, mean, std) in enumerate([("lenet", 0.5, 0.5), ("mlp", 0.1307, 0.3081), ("cnn2", 0, 1)]):
        torch.manual_seed(seed)
        model = build_model(name)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(30)  # peaked softmaxes, so that averaging probabilities and logits disagree
        save_model(
            root / "models" / f"{name}.pt", name, model.state_dict(), mean, std, test_shifts=name == "mlp"
        )
    return root


def shifted_softmaxes(model: torch.nn.Module, info: ModelFile, digits: torch.Tensor) -> torch.Tensor:
    """(N, 10) mean softmax over the digits and their four 1-pixel shifts, zeros shifted in."""
    padded = torch.nn.functional.pad(digits, (1, 1, 1, 1))
    views = [
        padded[:, 1 + dy : 29 + dy, 1 + dx : 29 + dx] for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
    ]
    with torch.no_grad():
        return torch.stack([model.eval()(info.preprocessing.input(v)).softmax(1) for v in views]).mean(0)


def test_ensemble_combines_the_chosen_members_with_their_weights_and_temperatures(
    ensemble_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    paths = []
    for digit in range(6):
        paths.append(tmp_path / f"{digit}.png")
        render_digit(digit, size=64, dark_on_light=digit % 2 == 0).save(paths[-1])
    (ensemble_dir / "models" / "cnn2.pt").write_bytes(b"not chosen, so never read")
    code, out, err = predict_here(
        monkeypatch,
        capsys,
        "--ensemble",
        "--members-file",
        str(ensemble_dir / "models" / "ensemble.json"),
        "--models-dir",
        str(ensemble_dir / "models"),
        "--top",
        "10",
        "--format",
        "json",
        *map(str, paths),
    )
    assert (code, err) == (0, "")
    digits = torch.stack([load_image(p) for p in paths])
    (lenet, lenet_info), (mlp, mlp_info) = [
        load_model(ensemble_dir / "models" / f"{name}.pt") for name in ("lenet", "mlp")
    ]
    with torch.no_grad():
        lenet_probs = (lenet.eval()(lenet_info.preprocessing.input(digits)) / 2.0).softmax(1)
    mlp_probs = (shifted_softmaxes(mlp, mlp_info, digits).log() / 0.5).softmax(1)  # mlp's file says shifts
    expected = 0.75 * lenet_probs + 0.25 * mlp_probs
    for record, path, row in zip(map(json.loads, out.splitlines()), paths, expected, strict=True):
        assert record["path"] == str(path)
        got = torch.zeros(10)
        for p in record["predictions"]:
            got[p["digit"]] = p["probability"]
        assert torch.allclose(got, row, atol=6e-5), (path, got, row)


def test_one_model_predicts_the_way_its_file_says_it_was_scored(
    ensemble_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    image = tmp_path / "seven.png"
    render_digit(7, size=64).save(image)
    code, out, err = predict_here(
        monkeypatch,
        capsys,
        "--model",
        str(ensemble_dir / "models" / "mlp.pt"),
        "--json",
        "--top",
        "10",
        str(image),
    )
    assert (code, err) == (0, "")
    model, info = load_model(ensemble_dir / "models" / "mlp.pt")
    expected = shifted_softmaxes(model, info, load_image(image)[None])[0]
    got = torch.zeros(10)
    for p in json.loads(out)["predictions"]:
        got[p["digit"]] = p["probability"]
    assert torch.allclose(got, expected, atol=6e-5)


def test_ensemble_names_a_missing_member_and_the_fix(
    ensemble_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    image = tmp_path / "three.png"
    render_digit(3, size=64).save(image)
    (ensemble_dir / "models" / "mlp.pt").unlink()
    monkeypatch.chdir(ensemble_dir)  # the defaults: models/ensemble.json and models/ here
    code, out, err = predict_here(monkeypatch, capsys, "--ensemble", str(image))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: models/mlp.pt not found")
    assert "`dvc repro`" in err and "`make pull`" in err
    code, _, err = predict_here(monkeypatch, capsys, "--ensemble", "--model", "models/lenet.pt", str(image))
    assert code == 2 and "not allowed with argument" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "models/ensemble.json not found: stage ensemble writes it (fix: run `dvc repro ensemble`"),
        ("{", "models/ensemble.json is not the ensemble stage's members file: it is not JSON (fix: run `dvc"),
        (
            '{"members": {"lenet": 1.0}, "temperatures": {"lenet": 1.0}}',
            "models/ensemble.json is a file from before ensemble files had a format; this version reads "
            "mnist-pipeline-ensemble/4 (fix: rerun the ensemble stage with `dvc repro -f ensemble`)",
        ),
        (
            '{"format": "mnist-pipeline-ensemble/1", "members": {"lenet": 1.0}}',
            "models/ensemble.json is a mnist-pipeline-ensemble/1 file; this version reads "
            "mnist-pipeline-ensemble/4 (fix: rerun the ensemble stage with `dvc repro -f ensemble`)",
        ),
        (
            '{"format": "mnist-pipeline-ensemble/4", "members": {}, "temperatures": {}}',
            "models/ensemble.json lacks or mistypes val_accuracy, rule, method, why, alternative, rounds "
            "(fix: rerun",
        ),
    ],
)
def test_a_missing_or_malformed_members_file_names_the_fix(
    ensemble_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    content: str | None,
    problem: str,
) -> None:
    image = tmp_path / "three.png"
    render_digit(3, size=64).save(image)
    members = ensemble_dir / "models" / "ensemble.json"
    if content is None:
        members.unlink()
    else:
        members.write_text(content)
    monkeypatch.chdir(ensemble_dir)
    code, out, err = predict_here(monkeypatch, capsys, "--ensemble", str(image))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {problem}") and err.count("\n") == 1


def test_csv_has_a_header_quoted_paths_and_top_k_columns(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    paths = [tmp_path / "a,b.png", tmp_path / 'say "two".png', tmp_path / "plain.png"]
    for digit, path in enumerate(paths):
        render_digit(digit, size=64).save(path)
    code, out, err = predict_here(
        monkeypatch, capsys, "--model", str(model_file), "--format", "csv", "--top", "3", *map(str, paths)
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith(f'"{paths[0]}",')  # the comma in the name is quoted
    header, *rows = list(csv.reader(out.splitlines()))
    assert header == ["path", "digit", "probability", "digit_2", "probability_2", "digit_3", "probability_3"]
    _, json_out, _ = predict_here(
        monkeypatch, capsys, "--model", str(model_file), "--json", "--top", "3", *map(str, paths)
    )
    for row, path, record in zip(rows, paths, map(json.loads, json_out.splitlines()), strict=True):
        assert row[0] == str(path)
        assert [int(d) for d in row[1::2]] == [p["digit"] for p in record["predictions"]]
        assert [float(p) for p in row[2::2]] == [p["probability"] for p in record["predictions"]]
    _, out, _ = predict_here(
        monkeypatch, capsys, "--model", str(model_file), "--format", "csv", str(paths[2])
    )
    assert next(csv.reader(out.splitlines())) == ["path", "digit", "probability"]


def test_json_flag_is_the_json_format(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "six.png"
    render_digit(6, size=64).save(path)
    _, alias, _ = predict_here(
        monkeypatch, capsys, "--model", str(model_file), "--top", "2", "--json", str(path)
    )
    _, long, _ = predict_here(
        monkeypatch, capsys, "--model", str(model_file), "--top", "2", "--format", "json", str(path)
    )
    assert alias == long and json.loads(alias)["path"] == str(path)


def test_make_predict_maps_model_format_and_top(tmp_path: Path) -> None:
    def dry_run(*args: str) -> str:
        return (
            subprocess.run(
                ["make", "-n", "-s", "-o", ".venv/.installed", "predict", *args],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )

    assert dry_run("MODEL=lenet", "IMAGES=a.png 'scans/*.png'").endswith(
        "predict --model models/lenet.pt --format text --top 1 a.png 'scans/*.png'"
    )
    empty = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "predict", "MODEL=", "IMAGES=a.png"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert (empty.returncode, empty.stdout) == (2, "")
    first, *rest = empty.stderr.splitlines()
    assert first.startswith(
        "error: MODEL is empty (fix: name a model under models: in params.yaml, or ensemble"
    )
    assert len(rest) == 1 and re.fullmatch(
        r"make(\[\d+\])?: \*\*\* \[Makefile:\d+: predict\] Error 2", rest[0]
    )
    assert dry_run("MODEL=ensemble", "IMAGES=digits/", "FORMAT=csv", "TOP=3").endswith(
        "predict --ensemble --format csv --top 3 digits/"
    )
