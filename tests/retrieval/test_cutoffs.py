"""Text search cut-offs: the last distances up to which pooled precision stays above the
targets; a model without them keeps every result."""

from __future__ import annotations

import numpy as np

from retrieval.cutoffs import Cutoffs, cutoff_for


def test_the_cutoff_is_where_precision_first_falls_below_the_target():
    precision = np.array([0.9, 0.7, 0.62, 0.55, 0.4, 0.35, 0.36, 0.2])
    assert cutoff_for(precision, 0.6) == 2
    assert cutoff_for(precision, 1 / 3) == 6
    assert cutoff_for(precision, 0.95) == -1  # not even the nearest
    assert cutoff_for(precision, 0.1) == 7  # never below: every distance


def test_results_are_named_by_the_cutoffs():
    cutoffs = Cutoffs({"64": {"strong": 2, "weaker": 10}})
    assert [cutoffs.strength(64, d) for d in (0, 2, 3, 10, 11)] == \
        ["strong", "strong", "weaker", "weaker", None]
    assert Cutoffs().strength(64, 40) == "strong"  # none fitted: every result, as before
