"""Per-label model choice: original-image model or dehazed-image model.

Dehazing clears up land labels (water, bare_ground) but erases the evidence for haze
and clear. The paper trains one model on each image set, measures every label's
validation F2 for both, and takes each label's probability from the better model.
"""

from __future__ import annotations

import numpy as np

from classifier.thresholds import best_label_f2


def choose_dehazed(y_true: np.ndarray, p_original: np.ndarray, p_dehazed: np.ndarray,
                   min_gain: float = 0.0) -> np.ndarray:
    """Boolean mask over labels: True where the dehazed model's best F2 is higher."""
    gain = best_label_f2(y_true, p_dehazed) - best_label_f2(y_true, p_original)
    return gain > min_gain


def combine(p_original: np.ndarray, p_dehazed: np.ndarray | None,
            use_dehazed: np.ndarray) -> np.ndarray:
    """Each label's probability from the model chosen for it."""
    if p_dehazed is None or not use_dehazed.any():
        return p_original
    return np.where(use_dehazed[None, :], p_dehazed, p_original)
