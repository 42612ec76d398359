"""Do results depend on the CPU? The first training steps of each recipe on this CPU and on emulated ones.

    python -m mnist_tools.cpuzoo [--models lenet,cnn6] [--cpus native,Haswell-v4] [--steps 3]
                                 [--batch-size 16]
                                 [--numerics portable|native] [--jobs 2]

Each CPU runs in a fresh process: `native` on this machine's CPU, any other name under qemu-user
(`qemu-x86_64 -cpu NAME`, QEMU 8 or newer), which makes our own Python and torch see that CPU's
CPUID, so ATen, oneDNN and MKL pick the kernels they would pick there. The process applies the
numerics mode the way the stages do (params.yaml's, or --numerics), then trains each committed
recipe for a few steps as the train stage trains it (train_recipe: augmentation, schedule, EMA,
optimizer) on one seeded batch, then predicts a few images plainly and with test-time shifts and
fits a temperature to them, as evaluate and ensemble do; it prints a digest of the weights, the
predictions and the temperature. Equal digests, equal bits. The
table is model x CPU; under portable numerics any difference exits 1. QEMU's TCG has no AVX-512,
so the emulated CPUs run their AVX2 paths, which portable asks of every CPU anyway; native numerics
on an AVX-512 CPU are expected to differ from them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import NUMERICS, load_params, model_names, numerics_param

# Two Intel and two AMD server generations; QEMU's names (`qemu-x86_64 -cpu help`).
DEFAULT_CPUS = ("native", "Haswell-v4", "Skylake-Server", "EPYC-Rome", "EPYC-Milan")
QEMU = "qemu-x86_64"
QEMU_MIN_MAJOR = 8  # 7.2 (Debian 12's own) crashes in grid_sample's AVX2 gather
QEMU_HOWTO = (
    "install qemu-user 8 or newer (Debian 12: apt-get install -t bookworm-backports qemu-user; "
    "Ubuntu 24.04 and Debian 13: apt-get install qemu-user), or run `make install-test` as root"
)


def train_steps(name: str, steps: int, config: dict, device: object, batch_size: int | None = None) -> dict:
    """Train the committed recipe of model name for a few seeded steps, as the train stage trains.

    train_recipe runs `steps` epochs of one batch each, on one batch of seeded random images and
    labels (augmentation, schedule, EMA and bf16 as the recipe says), scoring two images after each
    and choosing test-time shifts on them. Returns a digest of the kept weights and the median
    milliseconds per epoch (one step plus that tiny val pass); the digest also covers plain and
    shifted predictions of 16 images and the temperature fitted to them. The caller has set the
    process up (runtime.setup_process) already.
    """
    import torch

    from mnist_pipeline.ensembling import fit_temperature
    from mnist_pipeline.inference import predict_modes
    from mnist_pipeline.params import model_params, revise
    from mnist_pipeline.training import train_recipe

    recipe = model_params(config, name)
    batch_size = batch_size or recipe.batch_size  # a smaller batch: the same kernels, less to emulate
    recipe = revise(recipe, f"models.{name}", epochs=steps, clean_epochs=0, patience=0, batch_size=batch_size)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (recipe.batch_size + 2, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (recipe.batch_size + 2,), generator=generator)
    train, val = (images[:-2], labels[:-2]), (images[-2:], labels[-2:])
    trained = train_recipe(recipe, 0, train, val, 2, device)
    seconds = [row["seconds"] for row in trained.history]
    outputs = predict_modes(trained.model, images[:16], 8, trained.preprocessing, ("plain", "shifted"))
    temperature = torch.tensor(fit_temperature(outputs["plain"], labels[:16]))
    digest = hashlib.sha256()
    for key, value in [*trained.model.state_dict().items(), *outputs.items(), ("temperature", temperature)]:
        digest.update(key.encode())
        digest.update(value.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {
        "digest": digest.hexdigest()[:12],
        "ms_per_step": 1000 * statistics.median(seconds[1:] or seconds),
    }


def child(models: list[str], steps: int, params_path: Path, numerics: str, batch_size: int | None) -> None:
    """In this (possibly emulated) process: set it up as the stages do, then print one JSON line per model."""
    from mnist_pipeline.environment import runtime_environment
    from mnist_pipeline.runtime import setup_process

    config = load_params(params_path)
    config |= {"numerics": numerics, "train": config["train"] | {"device": "cpu"}}  # the CPU's own kernels
    runtime = setup_process(config, deterministic=True)
    environment = runtime_environment(runtime.device, runtime.threads, False, runtime.numerics)
    print(json.dumps({"environment": environment}))
    for name in models:
        digest = train_steps(name, steps, config, runtime.device, batch_size)
        print(json.dumps({"model": name} | digest), flush=True)


def qemu_problem() -> str | None:
    """Why qemu-user cannot emulate CPUs here (missing or older than QEMU_MIN_MAJOR), else None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found"
    version = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"version ((\d+)\.[\d.]+)", version)
    if not found or int(found.group(2)) < QEMU_MIN_MAJOR:
        return f"{QEMU} {found.group(1) if found else 'of unknown version'} is older than {QEMU_MIN_MAJOR}"
    return None


def run_cpu(
    cpu: str, models: list[str], steps: int, params_path: Path, numerics: str, batch_size: int | None = None
) -> dict:
    """Every model's digest on one CPU (native, or a QEMU model name), from one fresh process."""
    command = [sys.executable, "-m", "mnist_tools.cpuzoo", "--child", "--models", ",".join(models)]
    command += ["--steps", str(steps), "--params", str(params_path), "--numerics", numerics]
    command += ["--batch-size", str(batch_size)] if batch_size else []
    if cpu != "native":
        command = [QEMU, "-cpu", cpu, *command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "TCG doesn't support" not in line]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise PipelineError(
            f"the {cpu} process failed: {last} (fix: run `{' '.join(command)}` to see it all)"
        )
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {"environment": rows[0]["environment"], "models": {row["model"]: row for row in rows[1:]}}


def zoo_table(models: list[str], cpus: list[str], results: dict[str, dict]) -> tuple[str, list[str]]:
    """Markdown table model x CPU (digest, ms per step) and the models whose digests differ."""
    rows = ["| model | " + " | ".join(cpus) + " | same |", "|---|" + "---|" * (len(cpus) + 1)]
    differing = []
    for name in models:
        cells = [results[cpu]["models"][name] for cpu in cpus]
        same = len({cell["digest"] for cell in cells}) == 1
        differing += [] if same else [name]
        shown = [f"`{cell['digest']}` {cell['ms_per_step']:.0f} ms" for cell in cells]
        rows.append(f"| {name} | " + " | ".join(shown) + f" | {'yes' if same else '**no**'} |")
    return "\n".join(rows), differing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", help="comma-separated model names (default: every model in --params)")
    parser.add_argument(
        "--cpus", default=",".join(DEFAULT_CPUS), help="native and/or QEMU CPU models, comma-separated"
    )
    parser.add_argument("--steps", type=int, default=3, help="training steps per model")
    parser.add_argument(
        "--batch-size", type=int, help="images per step instead of each recipe's (the test subset: 16)"
    )
    parser.add_argument("--numerics", choices=NUMERICS, help="default: params.yaml's numerics")
    parser.add_argument("--jobs", type=int, default=2, help="CPUs emulated at once")
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file with the recipes"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = load_params(args.params)
    models = args.models.split(",") if args.models else model_names(config)
    unknown = [name for name in models if name not in model_names(config)]
    if unknown:
        raise PipelineError(
            f"no model {', '.join(unknown)} in {args.params} "
            f"(fix: choose from {', '.join(model_names(config))})"
        )
    numerics = args.numerics or numerics_param(config)
    if args.child:
        child(models, args.steps, args.params, numerics, args.batch_size)
        return

    cpus = args.cpus.split(",")
    problem = qemu_problem() if any(cpu != "native" for cpu in cpus) else None
    if problem:
        raise PipelineError(f"{problem} (fix: {QEMU_HOWTO})")
    print(
        f"{args.steps} training steps per model, numerics {numerics}; cell: digest of the weights, their "
        "plain and shifted predictions and a temperature fitted to them; ms per step"
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            cpu: pool.submit(run_cpu, cpu, models, args.steps, args.params, numerics, args.batch_size)
            for cpu in cpus
        }
        results = {cpu: future.result() for cpu, future in futures.items()}
    table, differing = zoo_table(models, cpus, results)
    print(table)
    print("\nwhat each process dispatched to:")
    for cpu in cpus:
        env = results[cpu]["environment"]
        print(
            f"- {cpu}: ATen {env['aten_cpu_capability']}, oneDNN {env['onednn_isa']}, MKL {env['mkl_cbwr']}, "
            f"{env['threads']} threads, torch {env['torch']}"
        )
    if differing and numerics == "portable":
        print(f"\nportable numerics differ between CPUs for: {', '.join(differing)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run(main)
