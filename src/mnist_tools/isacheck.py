"""Do results depend on the CPU's instruction set? A few training steps of each model under capped ISAs.

    python -m mnist_tools.isacheck [--models lenet,bnnet] [--steps 5] [--repeats 2]

Each (setting, model, repeat) runs in a fresh process, because ATen, oneDNN and MKL read their caps
(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_CBWR) once. Every run trains the committed recipe's
model (its memory format and bf16 autocast) for a few steps on the same seeded batches and prints a
digest of the final weights and the median step time. Equal digests mean bit-identical weights. A
cap above what the CPU has changes nothing, so capping imitates an older CPU, never a newer one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from mnist_pipeline.cli import run
from mnist_pipeline.environment import PORTABLE_ENV, describe
from mnist_pipeline.params import load_params, model_names

# Key → (column label, environment overrides); each imitates a CPU that has at most that ISA.
SETTINGS = {
    "native": ("native", {}),
    "avx512-bf16": (
        "oneDNN AVX512_CORE_BF16 (EPYC Zen 4 without AMX)",
        {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    ),
    "avx2": ("ATen AVX2 + oneDNN AVX2", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    "portable": ("portable (AVX2 everywhere, MKL_CBWR)", PORTABLE_ENV),
    "pre-2013": (
        "ATen default + oneDNN AVX (pre-2013 CPU)",
        {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX"},
    ),
}


def train_steps(name: str, steps: int, params_path: Path) -> dict:
    """Train the committed recipe of model name for a few seeded steps of the train stage's loop.

    fit_epochs runs `steps` epochs of one batch each, on one batch of seeded random images and labels
    (augmentation, schedule, EMA and bf16 as the recipe says), scoring two images after each. Returns
    a digest of the final weights, the median seconds per epoch (one step plus that tiny val pass) in
    milliseconds, and the environment.
    """
    import dataclasses

    import torch

    from mnist_pipeline.environment import runtime_environment
    from mnist_pipeline.models import build_model
    from mnist_pipeline.params import load_params, model_params, train_params
    from mnist_pipeline.training import fit_epochs, preprocessing_of

    raw = load_params(params_path)
    recipe, settings = model_params(raw, name), train_params(raw)
    recipe = dataclasses.replace(recipe, epochs=steps, clean_epochs=0, patience=0)
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    model = preprocessing_of(recipe).prepare(build_model(recipe.arch))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (recipe.batch_size + 2, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (recipe.batch_size + 2,), generator=generator)
    train, val = (images[:-2], labels[:-2]), (images[-2:], labels[-2:])
    seconds = [epoch.row["seconds"] for epoch in fit_epochs(model, recipe, train, val, 0, 2)]
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {
        "digest": digest.hexdigest()[:12],
        "ms_per_step": 1000 * statistics.median(seconds[1:] or seconds),
        "environment": runtime_environment(torch.device("cpu"), settings.threads, recipe.bf16),
    }


def run_child(name: str, steps: int, params_path: Path, overrides: dict[str, str]) -> dict:
    """train_steps in a fresh interpreter with the given environment overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_tools.isacheck",
            "--child",
            name,
            "--steps",
            str(steps),
            "--params",
            str(params_path),
        ],
        env=env | overrides,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} under {overrides}: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", help="comma-separated model names (default: every model in --params)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting and model")
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}"
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file with the recipes"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_steps(args.child, args.steps, args.params)))
        return

    models = args.models.split(",") if args.models else model_names(load_params(args.params))
    unknown = [key for key in args.settings.split(",") if key not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    settings = {key: SETTINGS[key] for key in args.settings.split(",")}
    print(
        f"{args.steps} training steps per run, {args.repeats} runs per cell; "
        "cell: weight digest, median ms per step"
    )
    rows = [
        "| model | " + " | ".join(label for label, _ in settings.values()) + " |",
        "|---|" + "---|" * len(settings),
    ]
    seen_env: dict[str, str] = {}
    for name in models:
        cells = []
        native = None
        for setting, (label, overrides) in settings.items():
            runs = [run_child(name, args.steps, args.params, overrides) for _ in range(args.repeats)]
            seen_env.setdefault(label, describe(runs[0]["environment"]))
            digests = {r["digest"] for r in runs}
            digest = (
                runs[0]["digest"] if len(digests) == 1 else "not repeatable: " + "/".join(sorted(digests))
            )
            native = native or digest
            same = " (= native)" if setting != "native" and digest == native else ""
            ms = statistics.median(r["ms_per_step"] for r in runs)
            cells.append(f"`{digest}`{same}, {ms:.0f} ms")
            print(f"{name} / {label}: {cells[-1]}", file=sys.stderr, flush=True)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print("\nwhat each setting ran on:")
    for setting, env in seen_env.items():
        print(f"- {setting}: {env}")


if __name__ == "__main__":
    run(main)
