"""One way to fail: every expected error, in stages and tools,
is one line `error: … (fix: …)` and exit status 2."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_pipeline import artifacts, models
from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_tools import mutation, smoke

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "stages").glob("*.py")])
# PipelineError and its subclasses, except ParamsError, which appends its own fix to every message
RAISED = {"PipelineError", "ModelFileError", "DownloadError", "ImageError"}


def message_text(node: ast.expr) -> str:
    """The literal text of a message expression, with interpolated names written as {name}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            message_text(v) if isinstance(v, ast.Constant) else f"{{{ast.unparse(v.value)}}}"
            for v in node.values
        )
    if isinstance(node, ast.BinOp):
        return message_text(node.left) + message_text(node.right)
    if isinstance(node, ast.Name):
        return f"{{{node.id}}}"
    return ""


def raised_messages(path: Path) -> list[tuple[int, str]]:
    """(line, message text) of each `raise <PipelineError kind>(message)` in a file.

    A message built by a function of the same file (`raise ModelFileError(_foreign_file(...))`) counts
    once per string that function returns.
    """
    tree = ast.parse(path.read_text())
    builders = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and isinstance(node.exc.func, ast.Name)
            and node.exc.func.id in RAISED
            and node.exc.args
        ):
            message = node.exc.args[0]
            if isinstance(message, ast.Call) and getattr(message.func, "id", None) in builders:
                returns = [
                    r.value
                    for r in ast.walk(builders[message.func.id])
                    if isinstance(r, ast.Return) and r.value
                ]
                found.extend((node.lineno, message_text(value)) for value in returns)
            else:
                found.append((node.lineno, message_text(message)))
    return found


def test_every_expected_error_says_the_fix() -> None:
    messages = [
        (f"{path.relative_to(ROOT)}:{line}", text) for path in SOURCES for line, text in raised_messages(path)
    ]
    assert len(messages) > 25  # the walk found them
    # the fix is in the message, or in a variable named fix that holds one, or artifacts.repair_hint's
    assert "(fix: " in artifacts.repair_hint("train@m")
    lacking = [
        (where, text)
        for where, text in messages
        if "(fix: " not in text
        and "{fix}" not in text.lower()
        and "{NO_REMOTE}" not in text
        and "{repair_hint(" not in text
    ]
    # ModelFile.load raises models.unknown_architecture's message, which has its fix
    assert "(fix: " in models.unknown_architecture("vgg16")
    lacking = [(where, text) for where, text in lacking if text or "artifacts.py:" not in where]
    # predict's load_image passes on to_mnist's ValueError, whose one message has its fix
    assert [text for _, text in lacking] == ["{path}: {e}"]
    assert (
        "(fix: "
        in (ROOT / "src" / "mnist_tools" / "predict.py").read_text().split("def to_mnist")[1].split("def ")[0]
    )


def test_raised_messages_reads_every_message_form(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text(
        'fix = "(fix: y)"\nraise PipelineError(f"a {b} (fix: c)")\n'
        'raise ImageError("a" + f"{fix}")\nraise ValueError("no")\n'
    )
    assert raised_messages(tmp_path / "x.py") == [(2, "a {b} (fix: c)"), (3, "a{fix}")]


def test_every_stage_and_tool_runs_its_main_through_run() -> None:
    # run() turns a PipelineError into one line on stderr and exit status 2
    mains = []
    for path in SOURCES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                mains.append((path.relative_to(ROOT).as_posix(), ast.unparse(node.body[0])))
    assert len(mains) == 9 + 13  # the stages and the tools
    assert {call for _, call in mains} == {"run(main)"}, mains


def run_main(main, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(main)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_run_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> None:
        raise PipelineError("it broke (fix: mend it)")

    assert run_main(fails, capsys) == (2, "", "error: it broke (fix: mend it)\n")

    def missing() -> None:
        open("/nonexistent/input.pt")

    assert run_main(missing, capsys) == (
        2,
        "",
        "error: /nonexistent/input.pt not found (fix: check the path, or run the stage that writes it)\n",
    )


def test_a_failed_smoke_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_smoke(root: Path, dest: Path) -> None:
        raise subprocess.CalledProcessError(255, ["dvc", "exp", "run"])

    monkeypatch.setattr(smoke, "run_smoke", failing_smoke)
    monkeypatch.setattr(sys, "argv", ["smoke", str(tmp_path / "s")])
    assert run_main(smoke.main, capsys) == (
        2,
        "",
        f"error: smoke run failed: dvc exp run exited with 255 (fix: the "
        f"failing stage printed why above; its files are in {tmp_path / 's'})\n",
    )


@pytest.mark.parametrize(
    ("returncode", "results", "expected"),
    [
        (3, "", "error: mutmut run exited with 3 (fix: rerun `mutmut run` to see why)\n"),
        (
            0,
            "",
            "error: mutmut tested no mutant: its first run of the unit tests failed "
            "(fix: run `mutmut run` and "
            "`python -m pytest` in mutants/ to see why)\n",
        ),
    ],
)
def test_a_failed_mutation_run_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    returncode: int,
    results: str,
    expected: str,
) -> None:
    def fake_run(args, **kwargs):
        return subprocess.CompletedProcess(args, returncode if args[1] == "run" else 0, stdout=results)

    monkeypatch.setattr(mutation.subprocess, "run", fake_run)
    monkeypatch.setattr(mutation.shutil, "rmtree", lambda *a, **k: None)
    monkeypatch.setattr(sys, "argv", ["mutation"])
    assert run_main(mutation.main, capsys) == (2, "", expected)
