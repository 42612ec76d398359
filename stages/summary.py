"""Stage summary: each model's test accuracy, loss and worst digit in one metrics file.

Keys are `<model>.acc`, `<model>.loss`, ... — unique across the project's metrics files, so `dvc exp show`
prints them without a file prefix and `make exps` fits a terminal. No wall-clock seconds: a bit-identical
rerun leaves `dvc metrics diff` empty (training seconds are in the leaderboard, plots/leaderboard.md).
"""

import argparse
from pathlib import Path

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.files import metrics_stage, read_json, write_json
from mnist_pipeline.summary import summarize


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument(
        "--metrics", required=True, type=Path, nargs="+", help="metrics/<model>.json, ensemble last"
    )
    parser.add_argument("--out", required=True, type=Path, help="summary metrics JSON to write")
    args = parser.parse_args()
    stage_outputs("summary", args.out)
    load_checked_params(args.params)
    metrics = {path.stem: read_json(path, made_by=metrics_stage(path.stem)) for path in args.metrics}
    summary = summarize(metrics)
    write_json(args.out, summary)
    best = max(summary, key=lambda name: summary[name]["acc"])
    print(f"wrote {args.out}: best test accuracy {summary[best]['acc']:.2%} ({best})")


if __name__ == "__main__":
    run(main)
