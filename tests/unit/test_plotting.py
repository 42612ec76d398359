"""The plot stage's figures and leaderboard (plots/figures/*.png, plots/leaderboard.{csv,md})."""

from __future__ import annotations

import io
import os
import shutil
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
