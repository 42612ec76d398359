"""Stage download: fetch and md5-check the four MNIST files (MNIST_MIRROR overrides the mirrors)."""

import argparse
from pathlib import Path

from mnist_pipeline.cli import load_checked_params, run, stage_outputs
from mnist_pipeline.data import download_mnist, mirrors_from_env
from mnist_pipeline.params import download_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", required=True, type=Path, help="folder to download into (data/raw)")
    args = parser.parse_args()
    stage_outputs("download")
    params = download_params(load_checked_params(args.params))
    mirrors = mirrors_from_env()
    if download_mnist(args.out, mirrors, params.timeout_s):
        print(f"downloaded MNIST into {args.out} from {', '.join(mirrors)}")
    else:
        print(f"kept MNIST in {args.out}: its four files have MNIST's md5s")


if __name__ == "__main__":
    run(main)
