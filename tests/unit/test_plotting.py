"""The plot stage's figures and leaderboard (plots/figures/*.png, plots/leaderboard.{csv,md})."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mnist_pipeline.plotting import (
    confident_mistakes,
    confusion_heatmap,
    image_grid,
    leaderboard,
    leaderboard_markdown,
    per_class_error_bars,
    val_accuracy_chart,
)


def metrics(accuracy: float, parameters: int | None = None, epochs: int | None = None) -> dict:
    per_class = {str(d): accuracy for d in range(10)} | {"3": accuracy - 0.01}
    m = {"accuracy": accuracy, "per_class_accuracy": per_class}
    if parameters is not None:
        m |= {"parameters": parameters, "epochs_run": epochs}
    return m


def board() -> pd.DataFrame:
    history = pd.DataFrame({"epoch": [1, 2], "seconds": [1.25, 2.5]})
    return leaderboard(
        {"lenet": metrics(0.99, 252866, 4), "ensemble": metrics(0.995), "mlp": metrics(0.98, 267410, 8)},
        {"lenet": history, "mlp": history},
        {"lenet": {"images_per_second": 1234.5}},
    )


def test_rows_rank_by_test_accuracy_and_name_the_worst_digit() -> None:
    rows = board()
    assert list(rows["model"]) == ["ensemble", "lenet", "mlp"]
    assert list(rows["worst_class"]) == [3, 3, 3] and rows["worst_class_accuracy"][1] == 0.98
    assert rows["training_seconds"][1] == 3.8  # 3.75 rounded to 0.1 s


def test_counts_print_as_integers_and_gaps_stay_empty() -> None:
    written = io.StringIO()
    board().to_csv(written, index=False)
    lines = written.getvalue().splitlines()
    assert lines[1].startswith("ensemble,,0.995,3,")  # no parameters or epochs for the ensemble
    assert lines[2].startswith("lenet,252866,0.99,3,0.98,4,")  # not 252866.0 and 4.0
    assert "| lenet | 252,866 | 99.00% | 3 (98.00%) | 4 | 4 | 1,234 |" in leaderboard_markdown(board())


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


def test_the_markdown_leaderboard_in_full() -> None:
    assert leaderboard_markdown(board()) == (
        "| model | parameters | test accuracy | worst class | epochs | training s | inference images/s |\n"
        "|---|---:|---:|---|---:|---:|---:|\n"
        "| ensemble | — | 99.50% | 3 (98.50%) | — | — | — |\n"
        "| lenet | 252,866 | 99.00% | 3 (98.00%) | 4 | 4 | 1,234 |\n"
        "| mlp | 267,410 | 98.00% | 3 (97.00%) | 8 | 4 | — |\n"
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
    plt.close("all")
