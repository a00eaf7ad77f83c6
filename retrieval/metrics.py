"""Retrieval metrics over Hamming ranking: MAP, MAP@K, precision-recall over radius.

Relevance: a database item is relevant to a query when they share at least one label.
Ties in Hamming distance are broken by database order (a stable sort), as in the
published evaluation code.
"""

from __future__ import annotations

import numpy as np


def hamming(query_codes: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """Q x N Hamming distances between {-1, +1} codes."""
    bits = query_codes.shape[1]
    return ((bits - query_codes.astype(np.int32) @ db_codes.astype(np.int32).T) // 2)


def relevance(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    return (query_labels @ db_labels.T) > 0


def average_precisions(distances: np.ndarray, relevant: np.ndarray,
                       top_k: int | None = None) -> np.ndarray:
    """AP per query over the ranking by distance (the first ``top_k`` only, if given).

    AP = mean over the relevant retrieved items of precision at their rank; a query with
    no relevant item in the list scores 0.
    """
    order = np.argsort(distances, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    hits = np.take_along_axis(relevant, order, axis=1).astype(np.float64)
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at = np.cumsum(hits, axis=1) / ranks
    n_hits = hits.sum(axis=1)
    return np.where(n_hits > 0, (precision_at * hits).sum(axis=1) / np.maximum(n_hits, 1), 0.0)


def mean_average_precision(query_codes: np.ndarray, db_codes: np.ndarray,
                           query_labels: np.ndarray, db_labels: np.ndarray,
                           top_k: int | None = None) -> float:
    distances = hamming(query_codes, db_codes)
    return float(average_precisions(distances, relevance(query_labels, db_labels), top_k).mean())


def pr_curve(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray,
             db_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of "everything within Hamming radius r", r = 0..bits,
    averaged over queries (precision over queries that retrieve something)."""
    bits = query_codes.shape[1]
    distances = hamming(query_codes, db_codes)
    relevant = relevance(query_labels, db_labels)
    n_relevant = np.maximum(relevant.sum(axis=1), 1)
    precision, recall = np.zeros(bits + 1), np.zeros(bits + 1)
    for radius in range(bits + 1):
        within = distances <= radius
        retrieved = within.sum(axis=1)
        hits = (within & relevant).sum(axis=1)
        some = retrieved > 0
        precision[radius] = (hits[some] / retrieved[some]).mean() if some.any() else 0.0
        recall[radius] = (hits / n_relevant).mean()
    return precision, recall
