"""Evaluate codes: MAP and MAP@K image->text, text->image (and image->image), PR curves
(drawn by ``imagery.plots.pr_curves``)."""

from __future__ import annotations

import numpy as np

from retrieval.metrics import average_precisions, hamming, pr_curve, relevance

TOP_K = 100


def evaluate_codes(query_image: np.ndarray, query_text: np.ndarray, query_labels: np.ndarray,
                   db_image: np.ndarray, db_text: np.ndarray, db_labels: np.ndarray,
                   top_k: int = TOP_K) -> dict:
    """Image queries search the database texts (i2t) and images (i2i); text queries
    search the database images (t2i)."""
    rel = relevance(query_labels, db_labels)
    out: dict = {"pr": {}}
    for task, queries, database in (("i2t", query_image, db_text),
                                    ("t2i", query_text, db_image),
                                    ("i2i", query_image, db_image)):
        distances = hamming(queries, database)
        out[task] = float(average_precisions(distances, rel).mean())
        out[f"{task}@{top_k}"] = float(average_precisions(distances, rel, top_k).mean())
        out["pr"][task] = pr_curve(queries, database, query_labels, db_labels)
    return out


def label_queries(label_names: list[str]) -> list[str]:
    """One query per label, typed the way people type it: the label's own words."""
    return [name.replace("_", " ") for name in label_names]


def precision_at_k(distances: np.ndarray, relevant: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per query, the share of the k nearest items that are relevant, with ties at the
    k-th distance counted at their mean (codes of a few bits tie by the thousand, and an
    index breaks ties arbitrarily)."""
    k = min(k, distances.shape[1])
    out = np.zeros(len(distances))
    for q, (dist, rel) in enumerate(zip(distances, relevant)):
        cut = np.partition(dist, k - 1)[k - 1]
        closer = dist < cut
        at_cut = dist == cut
        out[q] = (rel[closer].sum() + (k - closer.sum()) * rel[at_cut].mean()) / k
    return out


def word_query_precision(query_codes: np.ndarray, db_image: np.ndarray,
                         db_labels: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Precision@k of one short text query per label (``label_queries``) against the
    database images: whole-caption MAP hides how a two-word query fares."""
    return precision_at_k(hamming(query_codes, db_image), db_labels.T > 0, k)
