"""Stage publish: copy the files git carries from the train and evaluate stages' cached folders.

Every output of train@<model> and evaluate@<model> is in the DVC cache, so that DVC's run cache records
those stages: `make repro JOBS=N` and the relay across machines restore them instead of running them
again. `dvc metrics diff`, `dvc plots diff` and the PR summary read files from git at any commit, with
no remote: this stage writes those copies, byte for byte, to metrics/ and plots/.

    python stages/publish.py --models lenet mlp \\
        --copy 'evaluate@{model}' 'data/evaluation/{model}/metrics.json' 'metrics/{model}.json' ...
"""

import argparse

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.fanin import PLACEHOLDER, check_models, planned_copies, restorable
from mnist_pipeline.files import copy_file


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument(
        "--models", required=True, nargs="+", help="params.yaml's models, in its order (dvc.yaml: ${fan_in})"
    )
    parser.add_argument(
        "--copy",
        required=True,
        nargs=3,
        action="append",
        metavar=("STAGE", "FROM", "TO"),
        help=f"the stage that writes FROM, FROM, and where it goes ({PLACEHOLDER} in all three: per model)",
    )
    args = parser.parse_args()
    copies = planned_copies(args.copy, args.models)
    stage_outputs("publish", *restorable(copies))
    check_models(args.models, load_checked_params(args.params))
    for copy in copies:
        copy_file(copy.source, copy.dest, copy.stage)
    print(f"copied {len(copies)} files for {len(args.models)} models to metrics/ and plots/")


if __name__ == "__main__":
    run(main)
