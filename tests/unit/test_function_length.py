"""The pipeline core and the stages read top to bottom: no function longer than a screen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60  # from `def` to the function's last line, docstring and comments included


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line name (N lines)` for each function of a file over MAX_LINES lines."""
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]


def test_no_function_of_the_core_or_the_stages_is_over_60_lines() -> None:
    files = sorted([*(ROOT / "src" / "mnist_pipeline").glob("*.py"), *(ROOT / "stages").glob("*.py")])
    assert len(files) > 10
    assert [line for path in files for line in long_functions(path)] == []


def test_long_functions_counts_from_def_to_the_last_line(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES - 1))
    (tmp_path / "a.py").write_text(f"@decorator\ndef fits():\n{body}\ndef over():\n{body}    y = 0\n")
    assert long_functions(tmp_path / "a.py", tmp_path) == [
        f"a.py:{MAX_LINES + 3} over ({MAX_LINES + 1} lines)"
    ]
