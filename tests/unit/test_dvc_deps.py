"""dvc.yaml's deps list exactly the package modules each stage script imports
(read from the source, in seconds)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "mnist_pipeline"


def module_file(module: str) -> str:
    """mnist_pipeline.x.y → src/mnist_pipeline/x/y.py, or its package's __init__.py."""
    path = ROOT / "src" / Path(*module.split("."))
    return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(ROOT).as_posix()


def imported_modules(path: Path) -> set[str]:
    """Package files a file imports anywhere in it (a function-level import runs too), with the
    packages they are in, without recursion."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_pipeline"):
            names = [node.module]
            if node.module == "mnist_pipeline" or module_file(node.module).endswith("__init__.py"):
                # from mnist_pipeline import smallconv; a name that is a submodule is a file too
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if (ROOT / module_file(name)).exists()}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mnist_pipeline.")}
    # importing a.b.c imports the packages a and a.b first
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return {module_file(name) for name in found} - {"src/mnist_pipeline/__init__.py"}


def import_closure(*scripts: Path) -> set[str]:
    """Every package file that running the scripts can import, following imports from file to file."""
    seen: set[str] = set()
    todo = set().union(*(imported_modules(script) for script in scripts))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= imported_modules(ROOT / module)
    return seen


PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
BUILDS = {
    "train",
    "evaluate",
}  # the stages that build a model: the registry imports its architecture's module


def stage_deps() -> dict[str, tuple[str, set[str], list[str]]]:
    """Stage name (train@lenet for each model) → (its script, the package files its deps list, all deps)."""
    stages = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage["do"] if "foreach" in stage else stage
        words = body["cmd"].split()
        script = words[words.index("python") + 1]
        items = PARAMS["models"].items() if "foreach" in stage else [(None, {})]
        for key, item in items:
            deps = [dep.replace("${item.arch}", item.get("arch", "")) for dep in body["deps"]]
            files = {dep for dep in deps if dep.startswith("src/mnist_pipeline/")}
            stages[f"{name}@{key}" if key else name] = (script, files, deps)
    return stages


STAGES = stage_deps()


def expected_imports(stage: str, script: str) -> set[str]:
    """What the stage's process imports: its script's closure, and for a model stage its architecture's."""
    name, _, model = stage.partition("@")
    scripts = [ROOT / script]
    if name in BUILDS:
        scripts.append(
            ROOT / "src" / "mnist_pipeline" / "architectures" / f"{PARAMS['models'][model]['arch']}.py"
        )
    return import_closure(*scripts) | (
        {scripts[-1].relative_to(ROOT).as_posix()} if name in BUILDS else set()
    )


def test_imported_modules_reads_every_import_form(tmp_path: Path) -> None:
    code = (
        "import os\nimport mnist_pipeline.data\nfrom mnist_pipeline.cli import run\n"
        "from mnist_pipeline import smallconv\n"
        "from mnist_pipeline.architectures.shared import register_model\n"
        "def f():\n    from mnist_pipeline.models import build_model\n"
    )
    (tmp_path / "x.py").write_text(code)
    assert imported_modules(tmp_path / "x.py") == {
        f"src/mnist_pipeline/{name}"
        for name in ("data.py", "cli.py", "smallconv.py", "models.py", "architectures/__init__.py",
                     "architectures/shared.py")
    }  # fmt: skip


def test_every_stage_is_checked() -> None:
    names = [*PARAMS["models"]]
    assert set(STAGES) == {
        "validate", "download", "preprocess", "ensemble", "publish", "summary", "plot",
        *(f"{stage}@{name}" for stage in ("train", "evaluate") for name in names),
    }  # fmt: skip


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_exactly_the_files_its_process_imports(stage: str) -> None:
    script, listed, deps = STAGES[stage]
    assert script in deps
    imported = expected_imports(stage, script)
    assert listed == imported, (
        f"{stage}: dvc.yaml lists {sorted(listed - imported)} it does not import; "
        f"imports {sorted(imported - listed)} it does not list"
    )


def test_a_model_stage_depends_on_its_own_architecture_and_no_other() -> None:
    for stage, (_, listed, _) in STAGES.items():
        modules = {Path(f).stem for f in listed if f.startswith("src/mnist_pipeline/architectures/")}
        if stage.partition("@")[0] in BUILDS:
            arch = PARAMS["models"][stage.partition("@")[2]]["arch"]
            assert modules == {"__init__", "shared", arch}, stage
        else:
            assert modules <= {"__init__"}, stage  # validate lists the names, and imports none


def test_the_package_init_stays_a_bare_docstring() -> None:
    # Imported by every stage but listed in no deps: it must not hold code.
    body = ast.parse((PACKAGE / "__init__.py").read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def test_the_core_and_the_stages_never_import_the_tools() -> None:
    # artifacts.package_digest() hashes the core package, and dvc.yaml's deps name core modules only: a tool
    # imported from the core would change results without DVC or a resumed checkpoint noticing
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "stages").glob("*.py")]
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
