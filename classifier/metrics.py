"""F2, the competition's metric: F-beta with beta = 2, per image, averaged over images.

An image whose true and predicted label sets are both empty scores 1 (nothing to find,
nothing wrongly claimed). Per-label F2/precision/recall are computed over images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BETA = 2.0


def f2_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                   empty: float = 1.0) -> np.ndarray:
    """F2 = 5 tp / (5 tp + 4 fn + fp), elementwise; ``empty`` where there is nothing
    to find and nothing predicted (tp = fp = fn = 0)."""
    denom = 5 * tp + 4 * fn + fp
    return np.where(denom > 0, 5 * tp / np.maximum(denom, 1e-12), empty)


def fbeta_per_sample(y_true: np.ndarray, y_pred: np.ndarray, beta: float = BETA) -> np.ndarray:
    """F-beta of each row's predicted label set against its true set."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(axis=1).astype(np.float64)
    fp = (~y_true & y_pred).sum(axis=1)
    fn = (y_true & ~y_pred).sum(axis=1)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return np.where(denom > 0, (1 + b2) * tp / np.maximum(denom, 1e-12), 1.0)


def f2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sample-averaged F2 (the Planet competition's metric)."""
    if len(y_true) == 0:
        return 0.0
    return float(fbeta_per_sample(y_true, y_pred).mean())


def per_label_scores(y_true: np.ndarray, y_pred: np.ndarray,
                     labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """F2, precision, recall and support of each label (over images)."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(axis=0).astype(np.float64)
    fp = (~y_true & y_pred).sum(axis=0)
    fn = (y_true & ~y_pred).sum(axis=0)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    denom = 4 * precision + recall
    f2 = np.divide(5 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        label: {"f2": float(f2[j]), "precision": float(precision[j]),
                "recall": float(recall[j]), "support": int(tp[j] + fn[j])}
        for j, label in enumerate(labels)
    }


def paired_bootstrap(scores: np.ndarray, baseline: np.ndarray, resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(scores - baseline) over images resampled with
    replacement, the same images for both (paired): how far a difference between two
    settings scored on one test set could move on another draw of images."""
    diff = np.asarray(scores, np.float64) - np.asarray(baseline, np.float64)
    if len(diff) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # bounded memory: 250 x n indices at a time
        count = min(250, resamples - start)
        picks = rng.integers(0, len(diff), (count, len(diff)))
        means[start:start + count] = diff[picks].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
