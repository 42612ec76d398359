"""make repro JOBS=N and the relay: the chains DVC's graph gives, the progress lines, the failure line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import load_params, model_names
from mnist_tools import chains
from mnist_tools.chains import Chain, failure_line, plan, watch

ROOT = Path(__file__).resolve().parents[2]


def test_each_model_s_chain_is_its_train_and_evaluate_stages_after_the_shared_upstream() -> None:
    project = plan(ROOT)
    names = model_names(load_params(ROOT / "params.yaml"))
    assert project.upstream == ["validate", "download", "preprocess"]
    assert project.chains == {name: [f"train@{name}", f"evaluate@{name}"] for name in names}


class FakeQueue:
    """What `dvc queue status` said at each poll."""

    def __init__(self, polls: list[dict[str, str]]) -> None:
        self.polls = polls

    def statuses(self) -> dict[str, str]:
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]


def test_watch_says_one_line_as_each_chain_starts_and_ends_and_returns_the_failed(monkeypatch) -> None:
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(chains.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(chains.time, "sleep", lambda seconds: None)
    polls = [
        {"a": "Queued", "b": "Queued"},
        {"a": "Running", "b": "Queued"},
        {"a": "Running", "b": "Running"},
        {"a": "Success", "b": "Running"},
        {"a": "Success", "b": "Failed"},
    ]
    lines: list[str] = []
    a, b = Chain("mlp", "a"), Chain("lenet", "b")
    assert watch(FakeQueue(polls), [a, b], say=lines.append) == [b]
    assert lines == [
        "chain mlp: started",
        "chain lenet: started",
        "chain mlp: done in 20 s",
        "chain lenet: FAILED in 20 s",
    ]


def test_a_chain_that_finished_between_two_polls_still_starts_and_ends() -> None:
    lines: list[str] = []
    assert watch(FakeQueue([{"a": "Success"}]), [Chain("mlp", "a")], say=lines.append) == []
    assert lines == ["chain mlp: started", "chain mlp: done in 0 s"]


def test_a_failed_chain_is_one_line_naming_the_model_its_log_and_what_to_do() -> None:
    line = failure_line([Chain("mlp", "chain-mlp-abc123", "Failed")], 3)
    assert "\n" not in line
    assert line.startswith("the chain of mlp failed (its log: `dvc queue logs chain-mlp-abc123`)")
    assert "the workspace's outputs are as they were" in line
    assert "fix: correct it, then `make repro JOBS=3` restores those instead of rerunning them" in line


@pytest.mark.parametrize("models", [[], ["mlp", "nope"]])
def test_relay_names_the_models_it_can_run(models: list[str], monkeypatch) -> None:
    monkeypatch.setattr(chains, "dvc", lambda *args, **kwargs: pytest.fail("ran dvc"))
    with pytest.raises(PipelineError, match=r"name models under models: in params.yaml, one or more of"):
        chains.relay(ROOT, models)


def test_jobs_below_one_is_refused_before_anything_runs(monkeypatch) -> None:
    monkeypatch.setattr(chains, "dvc", lambda *args, **kwargs: pytest.fail("ran dvc"))
    with pytest.raises(PipelineError, match=r"^JOBS=0: it must be 1 or more \(fix: make repro JOBS=2\)$"):
        chains.local(ROOT, 0)


def test_relay_without_a_remote_says_how_to_add_one(monkeypatch) -> None:
    monkeypatch.setattr(chains, "default_remote", lambda root: None)
    monkeypatch.setattr(chains, "dvc", lambda *args, **kwargs: pytest.fail("ran dvc"))
    with pytest.raises(PipelineError) as error:
        chains.relay(ROOT, ["mlp"])
    assert str(error.value) == chains.NO_REMOTE


def test_the_chains_locked_outputs_are_dropped_so_that_dvc_looks_them_up_in_the_run_cache(
    tmp_path: Path,
) -> None:
    outs = [{"path": "models/mlp.pt", "md5": "1"}]
    lock = {
        "schema": "2.0",
        "stages": {
            "validate": {"cmd": "v", "outs": outs},
            "train@mlp": {"cmd": "t", "deps": [{"path": "d", "md5": "2"}], "outs": outs},
            "plot": {"cmd": "p"},
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    chains.forget_locked(tmp_path, ["train@mlp", "evaluate@mlp"])
    kept = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert kept == {
        "schema": "2.0",
        "stages": {
            "validate": {"cmd": "v", "outs": outs},
            "train@mlp": {"cmd": "t", "deps": [{"path": "d", "md5": "2"}]},
            "plot": {"cmd": "p"},
        },
    }
    assert list(kept["stages"]) == ["validate", "train@mlp", "plot"]  # DVC rewrites it in place
