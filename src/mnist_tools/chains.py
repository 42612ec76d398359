"""Each model's chain of stages (train@<model> → evaluate@<model>) run side by side, through DVC's own parts.

    python -m mnist_tools.chains local --jobs 3     # make repro JOBS=3: this machine, 3 chains at a time
    python -m mnist_tools.chains relay lenet cnn6   # make relay MODELS="lenet cnn6": one machine's share

The chains are independent, and each stays at params.yaml's train.threads, so running several at once
changes no bit. `local` brings the shared upstream stages up to date with `dvc repro`, queues one
experiment per stale chain (`dvc exp run --queue`), runs them N at a time (`dvc queue start -j N`) in
DVC's temporary copies, which share this project's cache and run cache, then runs an ordinary serial
`dvc repro`: it finds the chains' stages in the run cache ("is cached - skipping run"), so dvc.lock is
written by DVC, in the DAG's order, as a serial run writes it. The helper experiments are removed at the end.

`relay` is the same across machines through the team's DVC remote: each machine runs its models' chains
and pushes their outputs and run-cache entries; a last machine's `dvc repro --pull` restores them.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from mnist_pipeline.cli import run
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.params import load_params, model_names
from mnist_tools.remote import NO_REMOTE, default_remote

POLL_SECONDS = 5.0  # how often the queue is asked: each ask costs ~0.1 s of CPU, more on a loaded machine
PREFIX = "chain"  # helper experiments are named chain-<model>-<run id>


@dataclass(frozen=True)
class Plan:
    """The project's stages, split the way the chains run them."""

    upstream: list[str]  # the stages every chain reads from (validate, download, preprocess), in DAG order
    chains: dict[str, list[str]]  # model → its stages (those named <stage>@<model>), in DAG order


def plan(root: Path) -> Plan:
    """The chains of params.yaml's models and the stages upstream of them, from DVC's own graph."""
    import networkx as nx
    from dvc.repo import Repo  # ~1 s: only here

    names = model_names(load_params(root / "params.yaml"))
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge: a stage → a stage it depends on
        order = [stage.addressing for stage in reversed(list(nx.topological_sort(graph)))]
        chain_of = {stage: stage.addressing.partition("@")[2] for stage in graph}
        chained = {stage for stage, model in chain_of.items() if model in names}
        upstream = {dep.addressing for stage in chained for dep in nx.descendants(graph, stage)} - {
            stage.addressing for stage in chained
        }
    chains = {name: [s for s in order if s.partition("@")[2] == name] for name in names}
    return Plan([s for s in order if s in upstream], chains)


def dvc(root: Path, *args: str, capture: bool = False) -> str:
    """Run a dvc command in root; stop with its own words when it fails."""
    done = subprocess.run(["dvc", *args], cwd=root, text=True, capture_output=capture)
    if done.returncode != 0:
        detail = f": {done.stderr.strip().splitlines()[-1]}" if capture and done.stderr.strip() else ""
        raise PipelineError(f"`dvc {' '.join(args)}` failed{detail} (fix: see its output above)")
    return done.stdout if capture else ""


def stale_chains(root: Path, project: Plan) -> list[str]:
    """The models one of whose chain stages `dvc status` lists as changed (upstream already up to date)."""
    stages = [s for chain in project.chains.values() for s in chain]
    changed = json.loads(dvc(root, "status", "--json", *stages, capture=True) or "{}")
    return [name for name, chain in project.chains.items() if any(s in changed for s in chain)]


@dataclass
class Chain:
    """One model's queued experiment, as the poller last saw it."""

    model: str
    name: str  # the experiment's name
    status: str = "Queued"
    started: float | None = None
    seconds: float = 0.0


class Queue:
    """DVC's experiment queue, asked in this process: a `dvc queue status` per poll would cost ~1 s of CPU."""

    def __init__(self, root: Path) -> None:
        from dvc.repo import Repo

        self.repo = Repo(str(root))

    def statuses(self) -> dict[str, str]:
        """Experiment name → Queued, Running, Success or Failed."""
        return {entry["name"]: entry["status"] for entry in self.repo.experiments.celery_queue.status()}

    def close(self) -> None:
        self.repo.close()


def say(line: str) -> None:
    """A progress line, out before the next dvc command's output."""
    print(line, flush=True)


def watch(queue: Queue, chains: list[Chain], say=say) -> list[Chain]:
    """Poll until every chain is done, saying one line as each starts and ends; the failed ones."""
    while True:
        now, statuses = time.monotonic(), queue.statuses()
        for chain in chains:
            status = statuses.get(chain.name, chain.status)
            if status == chain.status:
                continue
            if chain.started is None and status != "Queued":
                chain.started = now
                say(f"chain {chain.model}: started")
            if status in ("Success", "Failed"):
                chain.seconds = now - chain.started
                verdict = "done" if status == "Success" else "FAILED"
                say(f"chain {chain.model}: {verdict} in {chain.seconds:.0f} s")
            chain.status = status
        if all(chain.status in ("Success", "Failed") for chain in chains):
            return [chain for chain in chains if chain.status == "Failed"]
        time.sleep(POLL_SECONDS)


def failure_line(failed: list[Chain], jobs: int) -> str:
    """The one line a failed chain stops the run with."""
    logs = ", ".join(f"`dvc queue logs {chain.name}`" for chain in failed)
    models = ", ".join(chain.model for chain in failed)
    return (
        f"the chain of {models} failed (its log: {logs}); the workspace's outputs are as they were, and the "
        f"chains that finished are in DVC's run cache (fix: correct it, then `make repro JOBS={jobs}` "
        "restores those instead of rerunning them; `dvc queue remove --failed` clears the failed entry)"
    )


def start_queue(root: Path, jobs: int) -> None:
    """`dvc queue start`, not captured: its workers inherit its stdout, and a pipe would stay open until
    they exit."""
    command = ["dvc", "queue", "start", "--jobs", str(jobs)]
    started = subprocess.run(command, cwd=root, stdout=subprocess.DEVNULL)
    if started.returncode != 0:
        raise PipelineError(f"`dvc queue start --jobs {jobs}` failed (fix: see its output above)")


def run_chains(root: Path, project: Plan, chains: list[Chain], jobs: int) -> None:
    """Queue the chains, run them jobs at a time, and wait; Ctrl-C stops the workers."""
    queue = Queue(root)
    try:
        for chain in chains:
            stages = project.chains[chain.model]
            dvc(root, "exp", "run", "--queue", "--name", chain.name, *stages, capture=True)
        start_queue(root, jobs)
        failed = watch(queue, chains)
    except KeyboardInterrupt:
        stop(root, queue, chains)
        remove_experiments(root, chains)
        raise PipelineError(
            "stopped: the running chains were killed and the queued ones removed; the workspace's outputs "
            f"are as they were (fix: `make repro JOBS={jobs}` starts again, restoring the finished chains)"
        ) from None
    finally:
        queue.close()
    if failed:
        remove_experiments(root, [chain for chain in chains if chain not in failed])
        raise PipelineError(failure_line(failed, jobs))


def stop(root: Path, queue: Queue, chains: list[Chain]) -> None:
    """Remove the queued chains, then interrupt the running ones, until none is left: the queued first, so
    that no worker a kill frees takes one. `dvc queue kill` sends SIGINT to each chain's process group,
    its stage included (--force's SIGKILL reaches only DVC's executor, and the stage trains on)."""
    for _ in range(10):
        statuses = queue.statuses()
        names = {
            status: [c.name for c in chains if statuses.get(c.name) == status]
            for status in ("Queued", "Running")
        }
        if not any(names.values()):
            break
        for command, status in (("remove", "Queued"), ("kill", "Running")):
            if names[status]:
                subprocess.run(["dvc", "queue", command, *names[status]], cwd=root, capture_output=True)
        time.sleep(2)
    for chain in chains:
        chain.status = statuses.get(chain.name, chain.status)
    stopped = [c.name for c in chains if c.status != "Success"]  # killed chains' entries say Failed
    subprocess.run(["dvc", "queue", "remove", *stopped], cwd=root, capture_output=True)


def remove_experiments(root: Path, chains: list[Chain]) -> None:
    """Remove the helper experiments (their results stay in the DVC cache and run cache)."""
    done = [chain.name for chain in chains if chain.status == "Success"]
    if done:
        subprocess.run(["dvc", "exp", "remove", *done], cwd=root, capture_output=True)


def forget_locked(root: Path, stages: list[str]) -> None:
    """Drop these stages' recorded outputs from dvc.lock; the final `dvc repro` records them again.

    For a stage whose deps and params match its dvc.lock entry but whose outputs are missing (a fresh
    clone), DVC restores only the outputs that entry names (dvc/stage/cache.py: restore), and the chain
    made other timing and machine records than the run that wrote the entry: DVC would train it again.
    Without recorded outputs, DVC looks the stage up in the run cache, where the chain's run is. The
    entry itself stays where it is, so DVC rewrites it in place and dvc.lock keeps a serial run's order.
    """
    path = root / "dvc.lock"
    if not stages or not path.is_file():
        return
    lock = yaml.safe_load(path.read_text()) or {}
    for stage in stages:
        lock.get("stages", {}).get(stage, {}).pop("outs", None)
    path.write_text(yaml.safe_dump(lock, sort_keys=False))


def local(root: Path, jobs: int) -> None:
    """make repro JOBS=N: upstream serially, the stale chains N at a time, then a serial `dvc repro`."""
    if jobs < 1:
        raise PipelineError(f"JOBS={jobs}: it must be 1 or more (fix: make repro JOBS=2)")
    project = plan(root)
    if project.upstream:
        dvc(root, "repro", *project.upstream)
    stale = stale_chains(root, project)
    run_id = secrets.token_hex(3)
    chains = [Chain(model, f"{PREFIX}-{model}-{run_id}") for model in stale]
    if chains:
        say(f"running the chains of {', '.join(stale)}, {min(jobs, len(chains))} at a time")
        started = time.monotonic()
        run_chains(root, project, chains, jobs)
        seconds = time.monotonic() - started
        say(f"every chain done in {seconds:.0f} s; DVC now restores them and runs the rest")
    forget_locked(root, [s for chain in chains for s in project.chains[chain.model]])
    try:
        dvc(root, "repro")
    finally:
        remove_experiments(root, chains)


def relay(root: Path, models: list[str]) -> None:
    """One machine's share of a relay: its models' chains, then their outputs and run cache to the remote."""
    project = plan(root)
    unknown = [m for m in models if m not in project.chains]
    if unknown or not models:
        raise PipelineError(
            f"MODELS={' '.join(models)}: name models under models: in params.yaml, one or more of "
            f'{", ".join(project.chains)} (fix: make relay MODELS="lenet cnn6")'
        )
    if not default_remote(root):
        raise PipelineError(NO_REMOTE)
    stages = [s for m in models for s in project.chains[m]]
    dvc(root, "repro", "--pull", *stages)  # upstream outputs come from the remote when they are there
    dvc(root, "push", "--run-cache", "--with-deps", *stages)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    local_parser = commands.add_parser("local", help="make repro JOBS=N: the stale chains N at a time")
    local_parser.add_argument("--jobs", required=True, type=int, help="chains at a time")
    relay_parser = commands.add_parser("relay", help="run these models' chains, push them to the DVC remote")
    relay_parser.add_argument("models", nargs="*", help="names under models: in params.yaml")
    args = parser.parse_args()
    root = Path.cwd()
    if args.command == "local":
        local(root, args.jobs)
    else:
        relay(root, args.models)


if __name__ == "__main__":
    run(main)
