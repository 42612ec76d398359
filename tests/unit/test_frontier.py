"""The frontier sweep: each row is the run the pipeline would make; resumable; combinable into ensembles."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.data import load_raw, split_train_val
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.inference import predict_logits
from mnist_pipeline.models import build_model
from mnist_pipeline.params import model_params
from mnist_pipeline.training import fit_epochs, preprocessing_of
from mnist_tools import frontier

ROOT = Path(__file__).resolve().parents[2]


def tiny_params(tmp_path: Path) -> Path:
    """The committed params.yaml with a 40-image val split, two folds and two quick recipes."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["preprocess"]["val_size"] = 40
    params["ensemble"]["folds"] = 2  # seeds 0-3 give every digit present at least 2 of the 40 val images
    params["models"] = {
        name: params["models"][name] | {"epochs": 1, "batch_size": 16, "ema_decay": 0.0}
        for name in ("mlp", "cnn2")
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_a_row_is_the_run_the_train_stage_would_make_and_a_rerun_skips_it(
    tiny_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, out, logits = tiny_params(tmp_path), tmp_path / "frontier.csv", tmp_path / "logits"
    common = ["--params", str(params), "--mnist", str(tiny_raw), "--out", str(out), "--logits", str(logits)]
    monkeypatch.setattr(sys, "argv", ["frontier", "--runs", "mlp:2", "cnn2", "--seeds", "3", *common])
    run(frontier.main)
    rows = pd.read_csv(out)
    assert rows[["model", "epochs", "seed"]].values.tolist() == [["mlp", 2, 3], ["cnn2", 1, 3]]
    # the same run by hand, as stages/train.py makes it: seed 3's split, init and order
    raw = yaml.safe_load(params.read_text())
    recipe = model_params(raw, "mlp")
    recipe = type(recipe)(**{**recipe.__dict__, "epochs": 2})
    images, labels = load_raw(tiny_raw, train=True)
    data = split_train_val(images, labels, 40, 0, 3)
    torch.manual_seed(3)
    model = preprocessing_of(recipe).prepare(build_model("mlp"))
    *_, last = fit_epochs(model, recipe, data["train"], data["val"], 3, 1000)
    model.load_state_dict(last.best_state)
    test_images, test_labels = load_raw(tiny_raw, train=False)
    saved = torch.load(logits / "mlp-e2-s3.pt", weights_only=True)
    expected = predict_logits(model, test_images, 1000, preprocessing_of(recipe))
    assert torch.equal(saved["test_plain"], expected)
    assert set(saved) == {"val_plain", "val_shifted", "test_plain", "test_shifted"}
    mlp = rows.iloc[0]
    assert mlp["test_acc_plain"] == frontier.rounded(
        (expected.argmax(1) == test_labels).float().mean().item()
    )
    # the CSV is tracked: accuracies as short fractions, without float32 noise (0.9692000150680542)
    header, *lines = out.read_text().splitlines()
    columns = [i for i, name in enumerate(header.split(",")) if "_acc" in name]
    assert len(columns) == 6
    assert all(re.fullmatch(r"[01](\.\d{1,6})?", line.split(",")[i]) for line in lines for i in columns), (
        lines
    )
    assert mlp["test_acc"] == mlp[f"test_acc_{'shifted' if mlp['test_shifts'] else 'plain'}"]
    # a second sweep over the same runs trains nothing and appends nothing
    before = out.read_text()
    monkeypatch.setattr(
        frontier, "train_recipe", lambda *a, **k: pytest.fail("a finished run was trained again")
    )
    run(frontier.main)
    assert out.read_text() == before


def test_accuracies_lose_only_their_float32_noise() -> None:
    assert (
        frontier.rounded(0.9692000150680542) == 0.9692
        and str(frontier.rounded(0.9692000150680542)) == "0.9692"
    )
    # every accuracy in the committed CSV is a count over 5,000 val or 10,000 test images: rounding keeps it
    rows = pd.read_csv(ROOT / "docs" / "frontier.csv")
    for column in [c for c in rows.columns if "_acc" in c]:
        images = 5000 if column.startswith("val") else 10000
        for accuracy in rows[column]:
            kept = frontier.rounded(accuracy)
            assert abs(kept - accuracy) < 1e-7 and round(kept * images, 6).is_integer(), (column, accuracy)


def test_combine_chooses_on_the_saved_val_logits_of_each_seed(
    tiny_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    params, logits = tiny_params(tmp_path), tmp_path / "logits"
    config = yaml.safe_load(params.read_text())
    config["models"]["cnn2_s1"] = config["models"]["cnn2"] | {"seed_offset": 1}  # no history of its own
    params.write_text(yaml.safe_dump(config))
    common = ["--params", str(params), "--mnist", str(tiny_raw), "--logits", str(logits)]
    runs = ["--runs", "mlp", "cnn2", "cnn2_s1", "--seeds", "0", "1", "--out", str(tmp_path / "f.csv")]
    monkeypatch.setattr(sys, "argv", ["frontier", *runs, *common])
    run(frontier.main)
    capsys.readouterr()
    history = tmp_path / "plots" / "train"
    history.mkdir(parents=True)
    for name, seconds in (("mlp", [2.0, 4.0]), ("cnn2", [30.0])):
        pd.DataFrame({"epoch": range(1, len(seconds) + 1), "seconds": seconds}).to_csv(
            history / f"{name}.csv"
        )
    monkeypatch.chdir(tmp_path)
    combine = ["--combine", "mlp:1", "cnn2:1", "cnn2_s1:1", "--seeds", "0", "1"]
    monkeypatch.setattr(sys, "argv", ["frontier", *combine, *common])
    run(frontier.main)
    lines = capsys.readouterr().out.splitlines()
    # 1 x 3 s + 2 x 30 s per epoch: cnn2_s1 at cnn2's rate
    assert [line.split(" training min; ")[0] for line in lines[:2]] == [
        f"seed {seed}: mlp:1 cnn2:1 cnn2_s1:1: 1.1" for seed in (0, 1)
    ]
    assert all(re.search(r"; (caruana|near-best average): val ", line) for line in lines[:2]), lines
    tests = [float(re.search(r"test (\d\.\d+)", line)[1]) for line in lines[:2]]
    mean = re.fullmatch(r"test over seeds \[0, 1\]: mean (\S+)% ± (\S+)% \(sample std\)", lines[2])
    assert float(mean[1]) == pytest.approx(100 * sum(tests) / 2, abs=1e-3)


def test_bad_runs_and_a_missing_run_name_the_fix(tiny_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"no model 'vgg' in params.yaml \(fix: use one of mlp, cnn2\)"):
        frontier.parse_runs(["vgg:3"], ["mlp", "cnn2"])
    with pytest.raises(PipelineError, match=r"epochs must be integers \(fix: write them as mlp:4,6\)"):
        frontier.parse_runs(["mlp:four"], ["mlp", "cnn2"])
    assert frontier.parse_runs(["mlp:2,4", "cnn2"], ["mlp", "cnn2"]) == [("mlp", 2), ("mlp", 4), ("cnn2", 0)]
    with pytest.raises(
        PipelineError, match=r"mlp-e9-s0.pt not found \(fix: run the sweep with --runs mlp:9 --seeds 0"
    ):
        frontier.combine_runs([("mlp", 9)], 0, tmp_path, torch.zeros(3, dtype=torch.long), {})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--combine", "mlp:1"], "--combine needs --logits"),
        (["--runs", "mlp:1"], "--runs needs --out"),
    ],
)
def test_a_missing_folder_or_csv_is_a_usage_error(
    tiny_raw: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: list,
    message: str,
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["frontier", *args, "--params", str(tiny_params(tmp_path)), "--mnist", str(tiny_raw)]
    )
    with pytest.raises(SystemExit) as stopped:
        frontier.main()
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_an_epoch_count_params_yaml_would_refuse_is_refused(
    tiny_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "frontier.csv"
    argv = ["frontier", "--runs", "mlp:-1", "--params", str(tiny_params(tmp_path)), "--mnist", str(tiny_raw)]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    monkeypatch.setattr(frontier, "train_recipe", lambda *a, **k: pytest.fail("an invalid recipe trained"))
    with pytest.raises(SystemExit) as stopped:
        run(frontier.main)
    assert stopped.value.code == 2
    assert "models.mlp.epochs = -1 must be >= 1" in capsys.readouterr().err
    assert not out.exists()
