"""Stage summary: each model's test accuracy, loss and worst digit in one metrics file.

Keys are `<model>.acc`, `<model>.loss`, ... — unique across the project's metrics files, so `dvc exp show`
prints them without a file prefix and `make exps` fits a terminal. No wall-clock seconds: a bit-identical
rerun leaves `dvc metrics diff` empty (training seconds are in the leaderboard, plots/leaderboard.md).
"""

import argparse
from pathlib import Path

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.fanin import add_model_arguments, check_models, model_files
from mnist_pipeline.files import read_json, write_json
from mnist_pipeline.summary import summarize


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    add_model_arguments(parser, {"--metrics": "each model's metrics JSON (metrics/{model}.json)"})
    parser.add_argument("--ensemble-metrics", required=True, type=Path, help="the ensemble's metrics JSON")
    parser.add_argument("--out", required=True, type=Path, help="summary metrics JSON to write")
    args = parser.parse_args()
    stage_outputs("summary", args.out)
    check_models(args.models, load_checked_params(args.params))
    metrics = {
        name: read_json(path, made_by=f"evaluate@{name}")
        for name, path in model_files(args.metrics, args.models).items()
    }
    metrics["ensemble"] = read_json(args.ensemble_metrics, made_by="ensemble")
    summary = summarize(metrics)
    write_json(args.out, summary)
    best = max(summary, key=lambda name: summary[name]["acc"])
    print(f"wrote {args.out}: best test accuracy {summary[best]['acc']:.2%} ({best})")


if __name__ == "__main__":
    run(main)
