"""dvc.yaml's deps list exactly the package modules each stage script imports
(read from the source, in seconds)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "mnist_pipeline"


def imported_modules(path: Path) -> set[str]:
    """Package modules a file imports anywhere in it (a function-level import runs too), without recursion."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_pipeline"):
            if node.module == "mnist_pipeline":  # from mnist_pipeline import smallconv
                found |= {alias.name for alias in node.names}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {
                alias.name.split(".")[1] for alias in node.names if alias.name.startswith("mnist_pipeline.")
            }
    return found


def import_closure(script: Path) -> set[str]:
    """Every package module that running the script can import, following imports from module to module."""
    seen: set[str] = set()
    todo = imported_modules(script)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= imported_modules(PACKAGE / f"{module}.py")
    return seen


def stage_deps() -> dict[str, tuple[str, set[str], list[str]]]:
    """Stage name (foreach templates once) → (its script, the package modules its deps list, all its deps)."""
    stages = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage["do"] if "foreach" in stage else stage
        words = body["cmd"].split()
        script = words[words.index("python") + 1]
        modules = {Path(dep).stem for dep in body["deps"] if dep.startswith("src/mnist_pipeline/")}
        stages[name] = (script, modules, body["deps"])
    return stages


STAGES = stage_deps()


def test_imported_modules_reads_every_import_form(tmp_path: Path) -> None:
    code = (
        "import os\nimport mnist_pipeline.data\nfrom mnist_pipeline.cli import run\n"
        "from mnist_pipeline import smallconv\n"
        "def f():\n    from mnist_pipeline.models import build_model\n"
    )
    (tmp_path / "x.py").write_text(code)
    assert imported_modules(tmp_path / "x.py") == {"data", "cli", "smallconv", "models"}


def test_every_stage_is_checked() -> None:
    assert set(STAGES) == {
        "validate",
        "download",
        "preprocess",
        "train",
        "evaluate",
        "ensemble",
        "summary",
        "plot",
    }


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_its_script_imports(stage: str) -> None:
    script, listed, deps = STAGES[stage]
    assert script in deps
    imported = import_closure(ROOT / script)
    assert "__init__" not in listed and "__init__" not in imported
    assert listed == imported, (
        f"{stage}: dvc.yaml lists {sorted(listed - imported)} it does not import; "
        f"imports {sorted(imported - listed)} it does not list"
    )


def test_the_package_init_stays_a_bare_docstring() -> None:
    # Imported by every stage but listed in no deps: it must not hold code.
    body = ast.parse((PACKAGE / "__init__.py").read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def test_the_core_and_the_stages_never_import_the_tools() -> None:
    # artifacts.package_digest() hashes the core package, and dvc.yaml's deps name core modules only: a tool
    # imported from the core would change results without DVC or a resumed checkpoint noticing
    files = [*PACKAGE.glob("*.py"), *(ROOT / "stages").glob("*.py")]
    imports = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else []
        )
    }
    assert {(path, name) for path, name in imports if name.split(".")[0] == "mnist_tools"} == set()
    assert {"stages/train.py", "src/mnist_pipeline/models.py"} <= {
        path for path, _ in imports
    }  # the walk saw them
