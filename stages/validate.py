"""Stage validate: check all of params.yaml before any other stage runs, and so before DVC deletes outputs.

DVC removes a stage's outputs just before its command runs. Every stage checks params.yaml too, but
by then a typo in `models.resnet18` has already cost `models/resnet18.pt`. This stage is upstream of
download, hence of every stage, and depends on the whole params file: a bad value stops the run here,
with nothing deleted. Its output is one constant line, so a valid edit reruns nothing after it.
"""

import argparse
from pathlib import Path

from mnist_pipeline.cli import load_checked_params, run
from mnist_pipeline.files import write_text
from mnist_pipeline.models import MODELS

CHECKED = "params.yaml passed validation\n"  # constant: the stages after this one depend on it


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", required=True, type=Path, help="marker file to write (data/params.ok)")
    args = parser.parse_args()
    load_checked_params(args.params, MODELS)  # arch names too: this stage may import the registry
    write_text(args.out, CHECKED)
    print(f"{args.params}: every section valid")


if __name__ == "__main__":
    run(main)
