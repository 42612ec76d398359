"""make mutation's report: mutmut's result lines grouped per module."""

from __future__ import annotations

from mnist_tools.mutation import module_scores, score_table

RESULTS = """
    mnist_pipeline.params.x_validate_model__mutmut_1: killed
    mnist_pipeline.params.x_validate_model__mutmut_2: survived
    mnist_pipeline.params.x_suggest__mutmut_7: killed
    mnist_pipeline.checkpoint.xǁFileCheckpointerǁload__mutmut_3: killed
    mnist_pipeline.checkpoint.x_fingerprint__mutmut_1: timeout
"""


def test_results_are_counted_per_module_including_methods() -> None:
    scores = module_scores(RESULTS)
    assert {m: dict(c) for m, c in scores.items()} == {
        "mnist_pipeline.params": {"killed": 2, "survived": 1},
        "mnist_pipeline.checkpoint": {"killed": 1, "timeout": 1},
    }


def test_table_shows_killed_share_and_undecided() -> None:
    assert score_table(module_scores(RESULTS)).splitlines()[2:] == [
        "| mnist_pipeline.checkpoint | 2 | 1 | 0 | 1 | 50.0% |",
        "| mnist_pipeline.params | 3 | 2 | 1 | 0 | 66.7% |",
    ]
