"""The plot stage's figures and leaderboard (plots/figures/*.png, plots/leaderboard.{csv,md})."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.testing.compare import compare_images

from mnist_pipeline.plotting import (
    confident_mistakes,
    confusion_heatmap,
    image_grid,
    leaderboard,
    leaderboard_markdown,
    per_class_error_bars,
    val_accuracy_chart,
)
from mnist_tools.offline_plots import LIBRARIES, read_library


def metrics(
    accuracy: float, parameters: int | None = None, epochs: int | None = None, shifts: bool = False
) -> dict:
    per_class = {str(d): accuracy for d in range(10)} | {"3": accuracy - 0.01}
    m = {"accuracy": accuracy, "val_accuracy": accuracy - 0.002, "per_class_accuracy": per_class}
    if parameters is not None:
        m |= {"parameters": parameters, "epochs_run": epochs, "test_shifts": shifts}
    return m


def board() -> pd.DataFrame:
    history = pd.DataFrame({"epoch": [1, 2], "seconds": [1.25, 2.5]})
    return leaderboard(
        {
            "lenet": metrics(0.99, 252866, 4, True),
            "ensemble": metrics(0.995),
            "mlp": metrics(0.98, 267410, 8),
        },
        {"lenet": history, "mlp": history},
        {"lenet": {"images_per_second": 1234.5}},
    )


def test_rows_rank_by_test_accuracy_and_name_the_worst_digit() -> None:
    rows = board()
    assert list(rows["model"]) == ["ensemble", "lenet", "mlp"]
    assert list(rows["worst_class"]) == [3, 3, 3] and rows["worst_class_accuracy"][1] == 0.98
    assert rows["training_seconds"][1] == 3.8  # 3.75 rounded to 0.1 s


def test_models_with_equal_accuracy_keep_their_order() -> None:
    names = [f"model{i:02d}" for i in range(60)]
    rows = leaderboard({name: metrics([0.99, 0.98, 0.97][i % 3]) for i, name in enumerate(names)}, {}, {})
    assert list(rows["model"]) == names[0::3] + names[1::3] + names[2::3]


def test_counts_print_as_integers_and_gaps_stay_empty() -> None:
    written = io.StringIO()
    board().to_csv(written, index=False)
    lines = written.getvalue().splitlines()
    assert lines[1].startswith("ensemble,,0.995,0.993,,3,")  # no parameters, shifts or epochs
    assert lines[2].startswith("lenet,252866,0.99,0.988,True,3,0.98,4,")  # not 252866.0 and 4.0
    assert "| lenet | 252,866 | 99.00% | 98.80% | on | 3 (98.00%) | 4 | 4 | 1,234 |" in leaderboard_markdown(
        board()
    )


def history(accs: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": range(1, len(accs) + 1),
            "val_acc": accs,
            "train_acc": accs,
            "val_loss": 0.1,
            "train_loss": 0.2,
        }
    )


def test_one_validation_accuracy_chart_with_a_line_per_model() -> None:
    fig = val_accuracy_chart({"lenet": history([0.97, 0.99]), "mlp": history([0.95, 0.96, 0.98])})
    assert len(fig.axes) == 1  # validation accuracy only: train vs val is dvc plots show's per-model chart
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["lenet", "mlp"]
    assert list(lines[1].get_ydata()) == pytest.approx([95.0, 96.0, 98.0])


def test_error_bars_show_the_error_rate_per_digit_in_percent() -> None:
    per_class = {
        "lenet": {str(d): 0.99 for d in range(10)} | {"9": 0.975},
        "mlp": {str(d): 0.98 for d in range(10)},
    }
    fig = per_class_error_bars(per_class)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights[:10] == pytest.approx([1.0] * 9 + [2.5]) and heights[10:] == pytest.approx([2.0] * 10)
    assert fig.axes[0].get_title() == "Test error rate per digit (%)"
    alone = per_class_error_bars({"lenet": per_class["lenet"]}).axes[0].patches
    assert [bar.get_x() for bar in alone[:2]] == pytest.approx([-0.4, 0.6])  # one model: 0.8-wide bars
    assert alone[0].get_width() == pytest.approx(0.8)


@pytest.mark.parametrize("normalize", [False, True])
def test_the_confusion_heat_map_leaves_the_correct_answers_out(normalize: bool) -> None:
    matrix = [[980 if r == c else 0 for c in range(10)] for r in range(10)]
    matrix[4][9], matrix[7][2] = 12, 3  # twelve 4s taken for 9s, three 7s for 2s
    fig = confusion_heatmap(matrix, "lenet", normalize)
    shown = fig.axes[0].get_images()[0].get_array()
    assert shown.mask.diagonal().all() and not shown.mask[4, 9]  # the diagonal is blank
    assert shown.max() == (
        pytest.approx(12 / 992) if normalize else 12
    )  # the colours span the mistakes alone
    texts = {text.get_text() for text in fig.axes[0].texts}
    assert texts == ({f"{12 / 992:.3f}", f"{3 / 983:.3f}"} if normalize else {"12", "3"})


def test_rows_with_one_image_or_none_still_show_shares() -> None:
    matrix = [[0] * 10 for _ in range(10)]
    matrix[2][5] = 1  # the only 2 in the test set, taken for a 5; no 7 at all
    shown = confusion_heatmap(matrix, "subset", normalize=True).axes[0].get_images()[0].get_array()
    assert shown[2, 5] == 1.0 and shown[7].sum() == 0
    assert shown.mask.sum() == 10  # only the diagonal is blank: no 0/0 cell in the row without images
    assert {text.get_text() for text in plt.gcf().axes[0].texts} == {"1.000"}


def test_the_colour_scale_starts_at_zero_mistakes() -> None:
    everywhere = [[100 if r == c else 2 for c in range(10)] for r in range(10)]  # no off-diagonal zero
    image = confusion_heatmap(everywhere, "lenet", normalize=False).axes[0].get_images()[0]
    assert image.get_clim() == (0, 2)
    plt.close("all")


def test_labels_turn_white_only_above_six_tenths_of_the_darkest_cell() -> None:
    matrix = [[900 if r == c else 0 for c in range(10)] for r in range(10)]
    matrix[1][7], matrix[4][9] = 10, 6  # 6 is exactly 0.6 x 10: still light enough for black
    fig = confusion_heatmap(matrix, "lenet", normalize=False)
    assert {text.get_text(): text.get_color() for text in fig.axes[0].texts} == {"10": "white", "6": "black"}
    plt.close(fig)


def test_the_markdown_leaderboard_in_full() -> None:
    assert leaderboard_markdown(board()) == (
        "| model | parameters | test accuracy | val accuracy | test-time shifts | worst class | epochs "
        "| training s | inference images/s |\n"
        "|---|---:|---:|---:|---|---|---:|---:|---:|\n"
        "| ensemble | — | 99.50% | 99.30% | — | 3 (98.50%) | — | — | — |\n"
        "| lenet | 252,866 | 99.00% | 98.80% | on | 3 (98.00%) | 4 | 4 | 1,234 |\n"
        "| mlp | 267,410 | 98.00% | 97.80% | off | 3 (97.00%) | 8 | 4 | — |\n"
    )


def test_confident_mistakes_are_the_wrong_answers_most_confident_first() -> None:
    probs = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.2, 0.7, 0.1],  # wrong at 0.7
            [0.1, 0.1, 0.8],  # wrong at 0.8
            [0.0, 0.6, 0.4],  # wrong at 0.6
            [0.1, 0.7, 0.2],  # wrong at 0.7, after row 1 (stable)
            [0.1, 0.1, 0.8],  # right
        ]
    )
    labels = np.array([0, 0, 1, 2, 2, 2])
    assert confident_mistakes(probs, labels, 10).tolist() == [2, 1, 4, 3]
    assert confident_mistakes(probs, labels, 2).tolist() == [2, 1]
    assert confident_mistakes(probs, np.array([0, 1, 2, 1, 1, 2]), 3).tolist() == []
    # equally confident mistakes keep their test-set order, however many there are (quicksort would not)
    confidence = np.array([0.6, 0.7, 0.8] * 70)
    ties = np.stack([1 - confidence, confidence], axis=1)
    expected = [i for level in (2, 1, 0) for i in range(level, 210, 3)]  # 0.8s, then 0.7s, then 0.6s
    assert confident_mistakes(ties, np.zeros(210, dtype=int), 210).tolist() == expected


def test_the_image_grid_tiles_each_digit_with_its_caption_and_colour() -> None:
    images = np.stack([np.full((28, 28), 40 * i, dtype=np.uint8) for i in range(5)])
    fig = image_grid(
        images,
        [f"digit {i}" for i in range(5)],
        cols=3,
        title="five digits",
        title_colors=["black", "red", "black", "red", "black"],
    )
    axes = fig.axes
    assert len(axes) == 6 and fig.get_size_inches().tolist() == pytest.approx([3.75, 3.3])  # 2 rows of 3
    assert all(not ax.axison for ax in axes)
    assert [ax.get_title() for ax in axes] == ["digit 0", "digit 1", "digit 2", "digit 3", "digit 4", ""]
    assert [ax.title.get_color() for ax in axes[:5]] == ["black", "red", "black", "red", "black"]
    shown = [ax.images[0] for ax in axes[:5]]
    assert all(np.array_equal(im.get_array(), images[i]) for i, im in enumerate(shown))
    assert all(im.get_clim() == (0, 255) and im.get_cmap().name == "gray" for im in shown)
    assert len(axes[5].images) == 0 and fig._suptitle.get_text() == "five digits"
    plain = image_grid(images[:2], ["a", "b"], cols=2, title="t")
    assert [ax.title.get_color() for ax in plain.axes] == ["black", "black"]
    assert all(ax.title.get_fontsize() == 7 for ax in plain.axes) and plain._suptitle.get_fontsize() == 10
    with plt.rc_context({"font.size": 14}):  # the caption sizes are the figure's own, not the style's
        single = image_grid(images[:1], ["only"], cols=1, title="one digit")
    assert single._suptitle.get_fontsize() == 10 and single.axes[0].title.get_fontsize() == 7
    assert [ax.get_title() for ax in single.axes] == ["only"]
    plt.close("all")


# How each figure looks (sizes, fonts, colours, labels, layout) is checked against a reviewed PNG in
# tests/unit/baseline/, with matplotlib's own image comparison: the pinned matplotlib wheel brings its
# own FreeType and fonts, so the same code draws the same pixels on every machine. After an intended
# change to a figure, rerun with UPDATE_FIGURE_BASELINES=1, look at the new PNGs and commit them.
BASELINES = Path(__file__).parent / "baseline"
BASELINE_DPI = 60  # small files (10-30 kB), yet legible when reviewed


def confusion_fixture() -> list[list[int]]:
    matrix = [[970 + r if r == c else 0 for c in range(10)] for r in range(10)]
    matrix[4][9], matrix[7][2], matrix[9][4], matrix[3][5] = 14, 5, 9, 1  # 14 dark enough for white text
    return matrix


def digit_tiles() -> np.ndarray:
    """Five (28, 28) uint8 tiles: bars and gradients that any change of cmap, limits or layout shows."""
    rows, cols = np.mgrid[0:28, 0:28]
    tiles = [
        (rows * 9).clip(0, 255),
        (cols * 9).clip(0, 255),
        np.where((rows - 14) ** 2 + (cols - 14) ** 2 < 80, 255, 0),
        np.where(abs(rows - cols) < 3, 200, 30),
        np.full((28, 28), 128),
    ]
    return np.stack(tiles).astype(np.uint8)


FIGURES = {
    "val_accuracy": lambda: val_accuracy_chart(
        {
            "lenet": history([0.97, 0.99]),
            "mlp": history([0.95, 0.96, 0.98]),
            "cnn2": history([0.80, 0.93, 0.985, 0.99]),  # its first epoch sits below the 90% floor
        }
    ),
    "confusion_counts": lambda: confusion_heatmap(confusion_fixture(), "lenet: test accuracy 99.29%", False),
    "confusion_shares": lambda: confusion_heatmap(confusion_fixture(), "lenet: test accuracy 99.29%", True),
    "per_class_error": lambda: per_class_error_bars(
        {
            "lenet": {str(d): 0.99 for d in range(10)} | {"9": 0.975},
            "mlp": {str(d): 0.98 - d / 500 for d in range(10)},
            "ensemble": {str(d): 0.995 for d in range(10)} | {"4": 0.99},
        }
    ),
    "image_grid": lambda: image_grid(
        digit_tiles(),
        ["3 → 5 (97%)", "7 → 1 (88%)", "4 → 9 (81%)", "8 → 8", "2 → 7 (64%)"],
        cols=3,
        title="lenet: most confident mistakes",
        title_colors=["red", "red", "red", "black", "red"],
    ),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_looks_as_reviewed(name: str, tmp_path: Path) -> None:
    drawn, baseline = tmp_path / f"{name}.png", BASELINES / f"{name}.png"
    fig = FIGURES[name]()
    fig.savefig(drawn, dpi=BASELINE_DPI)
    plt.close(fig)
    if os.environ.get("UPDATE_FIGURE_BASELINES") == "1":
        baseline.parent.mkdir(exist_ok=True)
        shutil.copyfile(drawn, baseline)
    assert baseline.is_file(), f"no {baseline}: draw it with UPDATE_FIGURE_BASELINES=1, review and commit it"
    difference = compare_images(str(baseline), str(drawn), tol=0)
    assert difference is None, f"{name} no longer looks as reviewed: {difference}"


# The chart templates of `dvc plots show` / `dvc plots diff` (.dvc/plots/*.json), filled as DVC fills them
# and drawn by the vega and vega-lite that the offline page inlines (`make install` fetches them when npm is
# there; node runs them). The JSON checks run everywhere; the drawing checks skip without node or the npm
# tarballs.
TEMPLATES = Path(__file__).parents[2] / ".dvc" / "plots"
NPM = Path(sys.prefix) / "share" / "npm"  # where `make install` packs vega and vega-lite
DASHED_LINES = ("model_lines", "train_vs_val")  # line charts that tell revisions apart by line style


def template(name: str) -> dict:
    return json.loads((TEMPLATES / f"{name}.json").read_text())


def views(spec: dict) -> list[dict]:
    """Every unit view of a template: the spec itself, its facet's spec, and their layers."""
    inner = spec.get("spec", spec)
    return [inner, *inner.get("layer", [])]


@pytest.mark.parametrize("name", DASHED_LINES)
def test_the_revision_legend_draws_each_revisions_line_style(name: str) -> None:
    dashed = [view for view in views(template(name)) if "strokeDash" in view.get("encoding", {})]
    assert len(dashed) == 1, "one layer encodes the revision as line style"
    (view,) = dashed
    # a point overlay in the same layer makes vega-lite draw the legend's dash swatches with no stroke
    assert view["mark"]["type"] == "line" and not view["mark"].get("point")
    encoding = view["encoding"]["strokeDash"]
    assert encoding["field"] == "rev" and encoding["title"] == "revision"
    legend = encoding["legend"]
    assert legend["symbolType"] == "stroke" and legend["symbolStrokeColor"] not in (None, "transparent")
    shown_with_revisions = "length(domain('strokeDash')) > 1"  # hidden in `dvc plots show`: one revision
    assert all(shown_with_revisions in legend[key]["expr"] for key in ("titleOpacity", "labelOpacity"))


def test_every_mistakes_panel_has_its_own_axis_and_no_empty_panel_gets_one() -> None:
    spec = template("confusion_errors")
    # with shared axes vega-lite draws the bottom axes under every column, empty cells of the last row too
    assert "columns" in spec and spec["resolve"]["axis"]["x"] == "independent"


def datapoints(name: str, revisions: list[str]) -> list[dict[str, str]]:
    """Rows as DVC passes them to a template: three models per revision, each file's row tagged."""
    rows = []
    for rev in revisions:
        for model in ("lenet", "mlp", "cnn2"):
            if name == "confusion_errors":
                rows += [
                    {"actual": str(a), "predicted": str(p), "rev": rev, "filename": f"{model}.csv"}
                    for a, p in [(3, 5), (4, 9), (4, 9), (7, 7)]
                ]
                continue
            for epoch in (1, 2):
                for field in ("train_loss", "val_loss"):
                    value = str(0.5 / epoch + (0.1 if field == "val_loss" else 0))
                    rows.append(
                        {"epoch": str(epoch), "rev": rev, "filename": f"{model}.csv", "field": field}
                        | {field: value, "val_acc": value, "dvc_inferred_y_value": value}
                    )
    return rows


def filled(name: str, revisions: list[str]) -> dict:
    """The template with DVC's anchors filled, as `dvc plots diff` with these revisions would."""
    x, y = {"confusion_errors": ("actual", "predicted"), "model_lines": ("epoch", "val_acc")}.get(
        name, ("epoch", "dvc_inferred_y_value")
    )
    text = (TEMPLATES / f"{name}.json").read_text()
    text = text.replace('"<DVC_METRIC_DATA>"', json.dumps(datapoints(name, revisions)))
    for anchor, value in [("TITLE", name), ("X_LABEL", x), ("Y_LABEL", y), ("X", x), ("Y", y)]:
        text = text.replace(f"<DVC_METRIC_{anchor}>", value)
    return json.loads(text)


def draw_svgs(specs: list[dict], tmp_path: Path) -> list[str]:
    """SVGs of vega-lite specs, drawn by node with the vega and vega-lite of the offline plots page."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run vega-lite")
    for tarball, member in LIBRARIES.items():
        if "embed" in tarball:
            continue
        if not (NPM / tarball).is_file():
            pytest.skip(f"no {NPM / tarball}: `make install` packs it")
        package = tmp_path / "node_modules" / tarball.rsplit("-", 1)[0]  # vega, vega-lite
        package.mkdir(parents=True)
        (package / "index.js").write_text(read_library(NPM / tarball, member))
    (tmp_path / "specs.json").write_text(json.dumps(specs))
    (tmp_path / "draw.js").write_text(
        "const vega = require('vega'), vl = require('vega-lite'), fs = require('fs');\n"
        "const specs = JSON.parse(fs.readFileSync('specs.json'));\n"
        "Promise.all(specs.map(s => new vega.View(vega.parse(vl.compile(s).spec), {renderer: 'none'})"
        ".toSVG())).then(svgs => console.log(JSON.stringify(svgs)));\n"
    )
    done = subprocess.run([node, "draw.js"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def legend_swatches(svg: str) -> list[dict[str, str]]:
    """The attributes of each line-style swatch in an SVG's legends."""
    paths = re.findall(r'class="mark-symbol role-legend-symbol"[^>]*><path ([^>]*)/>', svg)
    swatches = [dict(re.findall(r'([\w-]+)="([^"]*)"', path)) for path in paths]
    return [swatch for swatch in swatches if "stroke-dasharray" in swatch]


@pytest.mark.parametrize("name", DASHED_LINES)
def test_dvc_plots_diff_shows_each_revisions_line_style_and_show_shows_none(
    name: str, tmp_path: Path
) -> None:
    diff, show = draw_svgs([filled(name, ["main", "workspace"]), filled(name, ["workspace"])], tmp_path)
    swatches = legend_swatches(diff)
    assert [s["stroke-dasharray"] for s in swatches] == ["1,0", "4,2"]  # solid main, dashed workspace
    assert all(s.get("stroke") not in (None, "transparent") and s["opacity"] == "1" for s in swatches)
    assert all(s["opacity"] == "0" for s in legend_swatches(show))  # one revision: no revision legend


@pytest.mark.parametrize("revisions", [["workspace"], ["main", "workspace"]])
def test_the_mistakes_chart_draws_one_axis_per_panel(revisions: list[str], tmp_path: Path) -> None:
    spec = filled("confusion_errors", revisions)
    spec["columns"] = 2 * len(revisions)  # three models a revision: the last row is short of panels
    (svg,) = draw_svgs([spec], tmp_path)
    assert svg.count(">predicted</text>") == 3 * len(revisions)  # no axis under an empty cell
