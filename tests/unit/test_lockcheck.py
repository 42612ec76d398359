"""check-lock's pieces on made-up inputs; tests/e2e/test_sharing_e2e.py runs it on a real smoke run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from mnist_tools.lockcheck import (
    StaleStage,
    consistency_reasons,
    declaration_reasons,
    gathering_reasons,
    leaf_changes,
    params_changes,
    recorded_outputs,
    report_markdown,
    report_text,
    status_reasons,
)

ROOT = Path(__file__).resolve().parents[2]


def test_leaf_changes_name_each_changed_leaf_with_old_and_new() -> None:
    old = {"lr": 0.1, "epochs": 10, "gone": True, "same": "x"}
    new = {"lr": 0.05, "epochs": 10.0, "added": 3, "same": "x"}
    assert leaf_changes(old, new, "models.lenet") == [
        "models.lenet.lr 0.1 → 0.05",
        "models.lenet.epochs 10 → 10.0",
        "models.lenet.gone true → (absent)",
        "models.lenet.added (absent) → 3",
    ]
    assert leaf_changes({"a": {"b": 1}}, {"a": {"b": 1}}, "k") == []


def test_params_changes_read_dotted_keys_from_the_params_file() -> None:
    locked = {"params.yaml": {"train.threads": 2, "seed": 0, "models.lenet": {"lr": 0.1}}}
    current = {"params.yaml": {"train": {"threads": 1}, "seed": 0, "models": {}}}
    assert params_changes(locked, current) == ["train.threads 2 → 1", 'models.lenet {"lr": 0.1} → (absent)']


def test_status_reasons_ignore_absent_data_and_name_code_params_and_committed_outputs() -> None:
    status = [
        "changed command",
        {
            "changed deps": {
                "data/processed/train.pt": "deleted",
                "src/pkg/training.py": "modified",
                "src/pkg/new.py": "deleted",
                "params.yaml": {"modified": ["seed"]},
            }
        },
        {
            "changed outs": {
                "models/lenet.pt": "not in cache",
                "metrics/lenet.json": "modified",
                "plots/train/lenet.csv": "deleted",
            }
        },
    ]
    reasons = status_reasons(
        status,
        {"params.yaml": {"seed": 0}},
        {"params.yaml": {"seed": 1}},
        produced={"data/processed/train.pt", "models/lenet.pt"},
        tracked={"src/pkg/training.py", "metrics/lenet.json"},
        uncached_outs={"metrics/lenet.json", "plots/train/lenet.csv"},
    )
    assert reasons == [
        "the command in dvc.yaml changed",
        "src/pkg/training.py changed",
        "src/pkg/new.py is not committed",
        "params seed 0 → 1",
        "committed metrics/lenet.json is not the output dvc.lock records",
        "plots/train/lenet.csv is not committed (a cache: false output belongs in git)",
    ]


def test_a_clean_checkout_without_data_is_not_stale() -> None:
    status = [
        {"changed deps": {"data/raw": "deleted"}},
        {"changed outs": {"data/processed/train.pt": "not in cache"}},
    ]
    assert (
        status_reasons(
            status,
            {},
            {},
            produced={"data/raw", "data/processed/train.pt"},
            tracked=set(),
            uncached_outs=set(),
        )
        == []
    )


def test_declaration_reasons_compare_dvc_yaml_with_the_lock() -> None:
    entry = {"outs": [{"path": "data/processed"}], "deps": [{"path": "data/raw"}, {"path": "old.py"}]}
    assert declaration_reasons(["data/processed/train.pt"], ["data/raw"], entry) == [
        "output data/processed/train.pt is not in dvc.lock",
        "dvc.lock records output data/processed, which dvc.yaml no longer declares",
        "dvc.lock records dependency old.py, which dvc.yaml no longer declares",
    ]


LOCK = {
    "stages": {
        "train@a": {"outs": [{"path": "models/a.pt", "md5": "aa"}]},
        "evaluate@a": {
            "deps": [{"path": "models/a.pt", "md5": "aa"}],
            "outs": [{"path": "logits/a.pt", "md5": "la"}],
        },
        "evaluate@b": {"outs": [{"path": "logits/b.pt", "md5": "lb"}]},
    }
}


def test_consistency_compares_a_stage_input_with_what_its_producer_recorded() -> None:
    outputs = recorded_outputs(LOCK)
    assert consistency_reasons(LOCK["stages"]["evaluate@a"], outputs) == []
    moved = {"deps": [{"path": "models/a.pt", "md5": "stale"}]}
    assert consistency_reasons(moved, outputs) == [
        "models/a.pt is not the one train@a last wrote (rerun this stage after it)"
    ]


def test_a_folder_dep_that_gathers_other_stages_outputs_is_named() -> None:
    outputs = set(recorded_outputs(LOCK))
    assert gathering_reasons(["logits", "models/a.pt", "src", "logits/a.pt"], outputs) == [
        "dependency logits is a folder of other stages' outputs (name the files it reads in dvc.yaml)"
    ]
    assert gathering_reasons(["logits/a.pt", "log"], outputs) == []


def test_reports_name_each_stale_stage_and_the_fix() -> None:
    stale = [
        StaleStage("train@lenet", ("params models.lenet.lr 0.1 → 0.05",)),
        StaleStage("plot", ("src/x.py changed", "a | b")),
    ]
    text = report_text(stale, 16).splitlines()
    assert text[:2] == [
        "stale: train@lenet: params models.lenet.lr 0.1 → 0.05",
        "stale: plot: src/x.py changed; a | b",
    ]
    assert text[2].startswith("dvc.lock is stale: run `dvc repro`")
    md = report_markdown(stale, 16)
    assert md.startswith("### ❌ dvc.lock is stale") and "| `plot` | src/x.py changed<br>a &#124; b |" in md
    assert report_text([], 16) == "dvc.lock matches params and code (16 stages checked)"
    assert report_markdown([], 16).startswith("### ✅ dvc.lock matches params and code")


def test_no_lock_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mnist_tools.lockcheck", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith(f"error: no dvc.lock in {tmp_path} (fix: run `dvc repro`")
        and result.stderr.count("\n") == 1
    )


def test_a_stale_dvc_yaml_is_one_line_before_the_lock_is_read(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # a model added to params.yaml, dvc.yaml not rewritten
    params["models"]["twin"] = {**params["models"]["lenet"], "seed": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in ("dvc.yaml", "dvc.lock"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    line = f"dvc.yaml is stale: run `make dvc-yaml` (models in params.yaml: {', '.join(params['models'])})"
    for args, expected in (([], f"{line}\n"), (["--md"], f"### ❌ dvc.yaml is stale\n\n{line}\n\n")):
        result = subprocess.run(
            [sys.executable, "-m", "mnist_tools.lockcheck", "--repo", str(tmp_path), *args],
            capture_output=True,
            text=True,
        )
        assert (result.returncode, result.stdout, result.stderr) == (1, expected, "")
