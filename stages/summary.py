"""Stage summary: each model's test accuracy, loss, worst digit and training seconds in one metrics file.

Keys are `<model>.acc`, `<model>.loss`, ... — unique across the project's metrics files, so `dvc exp show`
prints them without a file prefix and `make exps` fits a terminal.
"""

import argparse
from pathlib import Path

import pandas as pd

from mnist_pipeline.cli import load_checked_params, read_json, run, write_json
from mnist_pipeline.params import model_names
from mnist_pipeline.summary import summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--metrics", required=True, type=Path, help="folder of metrics/<model>.json")
    parser.add_argument("--history", required=True, type=Path, help="folder of plots/train/<model>.csv")
    parser.add_argument("--out", required=True, type=Path, help="summary metrics JSON to write")
    args = parser.parse_args()
    names = model_names(load_checked_params(args.params))
    metrics = {name: read_json(args.metrics / f"{name}.json") for name in [*names, "ensemble"]}
    histories = {name: pd.read_csv(args.history / f"{name}.csv") for name in names}
    summary = summarize(metrics, histories)
    write_json(args.out, summary)
    best = max(summary, key=lambda name: summary[name]["acc"])
    print(f"wrote {args.out}: best test accuracy {summary[best]['acc']:.2%} ({best})")


if __name__ == "__main__":
    run(main)
