"""MAP, MAP@K and PR curves against values computed by hand."""

import numpy as np
import pytest

from retrieval.metrics import (
    average_precisions,
    hamming,
    mean_average_precision,
    pr_curve,
    relevance,
)


def test_hamming_counts_differing_bits():
    a = np.array([[1, 1, -1, -1]])
    b = np.array([[1, 1, -1, -1], [-1, 1, -1, -1], [-1, -1, 1, 1]])
    assert hamming(a, b).tolist() == [[0, 1, 4]]


def test_average_precision_of_a_toy_ranking():
    # ranking by distance: items 0,1,2,3 ; relevant: 0 and 2 -> AP = (1/1 + 2/3) / 2
    distances = np.array([[0, 1, 2, 3]])
    relevant = np.array([[True, False, True, False]])
    assert average_precisions(distances, relevant)[0] == pytest.approx((1 + 2 / 3) / 2)
    # only the top 2 count: one hit at rank 1 -> AP@2 = 1
    assert average_precisions(distances, relevant, top_k=2)[0] == pytest.approx(1.0)
    # relevant items last: (1/3 + 2/4) / 2
    worst = np.array([[False, False, True, True]])
    assert average_precisions(distances, worst)[0] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_ties_keep_database_order_and_no_relevant_scores_zero():
    distances = np.array([[1, 1, 0], [0, 0, 0]])
    relevant = np.array([[False, True, True], [False, False, False]])
    ap = average_precisions(distances, relevant)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)  # order: 2 (hit), 0, 1 (hit)
    assert ap[1] == 0.0


def test_map_uses_shared_labels_as_relevance():
    labels_q = np.array([[1, 0, 0], [0, 1, 1]])
    labels_db = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert relevance(labels_q, labels_db).tolist() == [[True, False, False], [True, True, False]]
    codes_q = np.array([[1, 1], [-1, -1]])
    codes_db = np.array([[1, 1], [-1, -1], [1, -1]])
    # query 0: ranking 0 (rel), 2, 1 -> AP 1 ; query 1: ranking 1 (rel), 2, 0 (rel) -> (1+2/3)/2
    expected = (1 + (1 + 2 / 3) / 2) / 2
    assert mean_average_precision(codes_q, codes_db, labels_q, labels_db) == pytest.approx(expected)


def test_pr_curve_over_radius():
    codes_q = np.array([[1, 1]])
    codes_db = np.array([[1, 1], [1, -1], [-1, -1]])
    labels_q = np.array([[1]])
    labels_db = np.array([[1], [0], [1]])
    precision, recall = pr_curve(codes_q, codes_db, labels_q, labels_db)
    # r=0: {0} -> P 1, R 1/2 ; r=1: {0,1} -> P 1/2, R 1/2 ; r=2: all -> P 2/3, R 1
    assert precision.tolist() == pytest.approx([1, 0.5, 2 / 3])
    assert recall.tolist() == pytest.approx([0.5, 0.5, 1.0])


def test_precision_at_k_counts_ties_at_the_cut_at_their_mean():
    from retrieval.evaluation import precision_at_k

    distances = np.array([[0, 1, 1, 1, 1, 5]])
    relevant = np.array([[True, True, False, False, False, True]])
    # k=3: item 0 for sure, then 2 of the four tied at distance 1, of which 1/4 relevant
    assert precision_at_k(distances, relevant, 3)[0] == pytest.approx((1 + 2 * 0.25) / 3)
    assert precision_at_k(distances, relevant, 1)[0] == 1.0
    assert precision_at_k(distances, relevant, 6)[0] == pytest.approx(3 / 6)
    assert precision_at_k(distances, relevant, 100)[0] == pytest.approx(3 / 6)  # k > N


def test_word_queries_are_the_label_names_and_score_against_image_labels():
    from retrieval.evaluation import label_queries, word_query_precision

    assert label_queries(["bare_ground", "water"]) == ["bare ground", "water"]
    db_labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    db_codes = np.array([[1, 1], [1, 1], [-1, -1], [-1, -1]], np.int8)
    queries = np.array([[1, 1], [1, 1]], np.int8)  # both queries land on label 0's codes
    np.testing.assert_allclose(word_query_precision(queries, db_codes, db_labels, 2), [1, 0])
