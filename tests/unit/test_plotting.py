"""The leaderboard the plot stage writes (plots/leaderboard.{csv,md})."""

from __future__ import annotations

import io

import pandas as pd

from mnist_pipeline.plotting import leaderboard, leaderboard_markdown


def metrics(accuracy: float, parameters: int | None = None, epochs: int | None = None) -> dict:
    per_class = {str(d): accuracy for d in range(10)} | {"3": accuracy - 0.01}
    m = {"accuracy": accuracy, "per_class_accuracy": per_class}
    if parameters is not None:
        m |= {"parameters": parameters, "epochs_run": epochs}
    return m


def board() -> pd.DataFrame:
    history = pd.DataFrame({"epoch": [1, 2], "seconds": [1.25, 2.5]})
    return leaderboard({"lenet": metrics(0.99, 252866, 4), "ensemble": metrics(0.995), "mlp": metrics(0.98, 267410, 8)},
                       {"lenet": history, "mlp": history}, {"lenet": {"images_per_second": 1234.5}})


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
