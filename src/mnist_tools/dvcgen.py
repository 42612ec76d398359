"""dvc.yaml's lines for each model, written from params.yaml's models: and the model registry.

    python -m mnist_tools.dvcgen            # make dvc-yaml: rewrite them
    python -m mnist_tools.dvcgen --check    # exit 1 with one line when they are stale (lockcheck runs it)

DVC expands the train and evaluate stages over params.yaml's models (foreach), but no list of files in
deps:, plots: or artifacts: (DVC 3.67). Those lists sit in dvc.yaml between two comments, after their
template:

      # for each model in params.yaml, `make dvc-yaml` writes:
      #   - data/logits/{model}.pt
      - data/logits/lenet.pt
      # end of the lines for each model

The template (the comment lines whose text starts three spaces after the '#') is written once per model,
in params.yaml's order, with {model} (its name), {arch}, {description} and {labels} (its architecture's
card in the registry) filled in. Everything else in dvc.yaml is hand-written and kept as it is, comments
included.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.files import write_text
from mnist_pipeline.models import architecture
from mnist_pipeline.params import load_params, model_names

START = re.compile(r"^(?P<indent> *)# for each model in params\.yaml, `make dvc-yaml` writes( \(.*\))?:$")
TEMPLATE = "#   "  # after the indent: a template line
END = "# end of the lines for each model"
PLACEHOLDER = re.compile(r"(?<!\$)\{(\w+)\}")  # ${...} is DVC's own interpolation
RESERVED = "ensemble"  # the ensemble's files are metrics/ensemble.json, plots/predictions/ensemble.csv, ...
FIX = "fix: correct the lines after `for each model in params.yaml` in dvc.yaml"


@dataclass(frozen=True)
class Region:
    """Lines [start, end) of dvc.yaml: a start marker, its template, the lines written from it, the end."""

    start: int  # index of the start marker
    end: int  # index after the end marker
    indent: str
    template: tuple[str, ...]  # without the indent and TEMPLATE prefix


def yaml_scalar(text: str, flow: bool = False) -> str:
    """text as YAML reads it back: plain when it can be, else double-quoted; flow: inside [...]."""
    quoted = json.dumps(text, ensure_ascii=False)  # JSON strings are YAML double-quoted scalars
    if not text or text.strip() != text or "\n" in text:
        return quoted
    try:
        read = yaml.safe_load(f"[{text}]") if flow else yaml.safe_load(f"key: {text}")["key"]
    except yaml.YAMLError:
        return quoted
    return text if read == ([text] if flow else text) else quoted


def model_fields(config: dict[str, Any]) -> list[dict[str, str]]:
    """Per model of params.yaml, in order, the values its template lines are filled with."""
    fields = []
    for name in model_names(config):
        recipe = config["models"][name]
        arch = recipe.get("arch") if isinstance(recipe, dict) else None
        if name == RESERVED:
            raise PipelineError(
                f"a model may not be named {RESERVED}: the ensemble's files have that name "
                f"(fix: rename models.{RESERVED} in params.yaml)"
            )
        card = architecture(arch, f"models.{name}.arch")
        labels = ", ".join(yaml_scalar(label, flow=True) for label in card.labels)
        fields.append(
            {
                "model": name,
                "arch": arch,
                "description": yaml_scalar(card.description),
                "labels": f"[{labels}]",
            }
        )
    return fields


def find_regions(lines: list[str]) -> list[Region]:
    """The marked regions of dvc.yaml's lines (without line ends), in order."""
    regions: list[Region] = []
    i = 0
    while i < len(lines):
        start = START.match(lines[i])
        if lines[i].strip() == END:
            raise PipelineError(f"dvc.yaml line {i + 1}: `{END}` closes no lines for each model ({FIX})")
        if not start:
            i += 1
            continue
        indent = start["indent"]
        j = i + 1
        template = []
        while j < len(lines) and lines[j].startswith(indent + TEMPLATE):
            template.append(lines[j][len(indent + TEMPLATE) :])
            j += 1
        if not template:
            raise PipelineError(
                f"dvc.yaml line {i + 1}: no template line (`{TEMPLATE}...`, as indented as this one) "
                f"follows ({FIX})"
            )
        while j < len(lines) and lines[j] != indent + END:
            if START.match(lines[j]):
                break
            j += 1
        if j == len(lines) or lines[j] != indent + END:
            raise PipelineError(f"dvc.yaml line {i + 1}: no `{indent}{END}` line closes these lines ({FIX})")
        regions.append(Region(i, j + 1, indent, tuple(template)))
        i = j + 1
    return regions


def fill(template: str, fields: dict[str, str], line: int) -> str:
    """One template line with the model's values in place of its {placeholders}."""

    def value(match: re.Match) -> str:
        if match[1] not in fields:
            raise PipelineError(
                f"dvc.yaml line {line}: unknown placeholder {match[0]}, not one of "
                f"{', '.join('{' + key + '}' for key in fields)} ({FIX})"
            )
        return fields[match[1]]

    return PLACEHOLDER.sub(value, template)


def render(text: str, config: dict[str, Any]) -> str:
    """dvc.yaml's text with each marked region rewritten for params.yaml's models; the rest as it was."""
    lines = text.split("\n")
    fields = model_fields(config)
    out: list[str] = []
    done = 0
    for region in find_regions(lines):
        out += lines[done : region.start + 1 + len(region.template)]
        for model in fields:
            for k, line in enumerate(region.template):
                out.append(region.indent + fill(line, model, region.start + 2 + k))
        out.append(lines[region.end - 1])
        done = region.end
    rendered = "\n".join(out + lines[done:])
    try:
        yaml.safe_load(rendered)
    except yaml.YAMLError as e:
        raise PipelineError(
            f"dvc.yaml as written for the models is not YAML: {str(e).splitlines()[0]} ({FIX})"
        ) from None
    return rendered


def hand_written(text: str) -> str:
    """dvc.yaml without the lines that render() writes: markers and templates stay, the models' lines go."""
    lines = text.split("\n")
    kept: list[str] = []
    done = 0
    for region in find_regions(lines):
        kept += lines[done : region.start + 1 + len(region.template)]
        done = region.end - 1
    return "\n".join(kept + lines[done:])


def stale_message(repo: Path) -> str | None:
    """One line when repo's dvc.yaml lacks what params.yaml and the registry say; None when it is current."""
    config = load_params(repo / "params.yaml")
    text = (repo / "dvc.yaml").read_text()
    if render(text, config) == text:
        return None
    return f"dvc.yaml is stale: run `make dvc-yaml` (models in params.yaml: {', '.join(model_names(config))})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="project folder")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when dvc.yaml is stale")
    parser.add_argument("--quiet", action="store_true", help="print only when dvc.yaml changed (make repro)")
    args = parser.parse_args()
    path = args.repo / "dvc.yaml"
    if args.check:
        message = stale_message(args.repo)
        print(message or f"{path} is current")
        sys.exit(1 if message else 0)
    config = load_params(args.repo / "params.yaml")
    text = path.read_text()
    rendered = render(text, config)
    names = ", ".join(model_names(config))
    if rendered != text:
        write_text(path, rendered)
        print(
            f"{path}: rewrote the lines for each model ({names}) from params.yaml: commit it with params.yaml"
        )
    elif not args.quiet:
        print(f"{path}: already had the lines for each model ({names})")


if __name__ == "__main__":
    run(main)
