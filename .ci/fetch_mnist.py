"""Download the four MNIST .gz files with torchvision (md5-checked) into a folder, for CI's cache."""

import shutil
import sys
import tempfile
from pathlib import Path

from torchvision.datasets import MNIST


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        MNIST(tmp, train=True, download=True)
        for gz in Path(tmp, "MNIST", "raw").glob("*.gz"):
            shutil.copy2(gz, out / gz.name)
    print(f"MNIST .gz files in {out}: {sorted(p.name for p in out.glob('*.gz'))}")


if __name__ == "__main__":
    main()
