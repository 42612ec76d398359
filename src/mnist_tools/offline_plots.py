"""Build the HTML template that makes `dvc plots show` / `dvc plots diff` render with no network.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so on an air-gapped machine it
stays blank. This template inlines the three libraries from their npm package tarballs (the
versions DVC's renderer is written against); `make install` builds it and points
`plots.html_template` at it in .dvc/config.local.

    python -m mnist_tools.offline_plots --npm DIR --out FILE
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

from mnist_pipeline.cli import run

# npm package → file inside its tarball; the versions DVC's own page asks the CDN for.
LIBRARIES = {
    "vega-5.20.2.tgz": "package/build/vega.min.js",
    "vega-lite-5.2.0.tgz": "package/build/vega-lite.min.js",
    "vega-embed-6.18.2.tgz": "package/build/vega-embed.min.js",
}

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def read_library(tarball: Path, member: str) -> str:
    """The minified script inside an npm tarball."""
    with tarfile.open(tarball) as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise FileNotFoundError(f"{member} missing from {tarball}")
        return extracted.read().decode("utf-8")


def build_template(npm_dir: Path) -> str:
    """The page with DVC's placeholders and the three libraries inline."""
    scripts = []
    for name, member in LIBRARIES.items():
        source = read_library(npm_dir / name, member)
        # A literal "</script" inside the code would end the inline element early.
        scripts.append("    <script>\n" + source.replace("</script", "<\\/script") + "\n    </script>")
    # DVC fills {plot_divs} and {refresh_tag}; there is no {scripts}, so no CDN tags are added.
    return PAGE.format(scripts="\n".join(scripts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--npm", required=True, type=Path, help="folder holding the npm tarballs (npm pack)")
    parser.add_argument("--out", required=True, type=Path, help="template file to write")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(build_template(args.npm), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
