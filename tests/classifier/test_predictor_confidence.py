"""decision_confidence: the review queue's ordering key."""

import numpy as np

from classifier.predictor import decision_confidence


def test_confidence_is_smallest_normalised_margin():
    thresholds = np.array([0.2, 0.5])
    scores = np.array([[0.2, 1.0],     # first label sits on its threshold -> 0
                       [0.6, 0.0],     # (0.6-0.2)/0.8 = 0.5 ; (0.5-0)/0.5 = 1 -> 0.5
                       [0.1, 0.75]])   # (0.2-0.1)/0.2 = 0.5 ; 0.25/0.5 = 0.5 -> 0.5
    assert np.allclose(decision_confidence(scores, thresholds), [0.0, 0.5, 0.5])


def test_confidence_is_one_only_at_the_extremes():
    thresholds = np.array([0.3, 0.3])
    assert np.allclose(decision_confidence(np.array([[1.0, 0.0]]), thresholds), [1.0])
    assert decision_confidence(np.array([[0.9, 0.05]]), thresholds)[0] < 1.0
