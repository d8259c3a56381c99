"""Smoothing of the prediction stream: mean of probabilities, majority vote, threshold, reset."""

import numpy as np
import pytest

from edge_har.device.smoothing import Smoother

LABELS = ["Sit", "Walk", "Wave"]


def probs(*values):
    return np.asarray(values, dtype=np.float32)


def test_window_one_is_the_raw_prediction():
    s = Smoother(LABELS, "mean_prob", window=1)
    out = s.update(probs(0.1, 0.7, 0.2))
    assert (out.label, out.raw_label) == ("Walk", "Walk")
    assert out.confidence == pytest.approx(0.7)
    out = s.update(probs(0.8, 0.1, 0.1))
    assert out.label == "Sit" and out.confidence == pytest.approx(0.8)


def test_mean_prob_averages_the_last_n_windows_and_forgets_older_ones():
    s = Smoother(LABELS, "mean_prob", window=3)
    for p in [(0.9, 0.05, 0.05), (0.9, 0.05, 0.05), (0.2, 0.7, 0.1)]:
        out = s.update(probs(*p))
    # one Walk window does not flip two confident Sit windows
    assert out.label == "Sit"
    assert out.raw_label == "Walk"
    np.testing.assert_allclose(out.probabilities, [2.0 / 3, 0.8 / 3, 0.2 / 3], rtol=1e-5)
    assert out.confidence == pytest.approx(2.0 / 3, rel=1e-5)
    # two more Walk windows: the Sit windows have left the window of 3
    s.update(probs(0.2, 0.7, 0.1))
    out = s.update(probs(0.2, 0.7, 0.1))
    assert out.label == "Walk" and out.confidence == pytest.approx(0.7)


def test_majority_vote_ignores_a_strong_minority_that_mean_would_follow():
    seq = [(0.0, 0.0, 1.0), (0.0, 0.55, 0.45), (0.0, 0.55, 0.45)]
    mean = Smoother(LABELS, "mean_prob", window=3)
    vote = Smoother(LABELS, "majority", window=3)
    for p in seq:
        m, v = mean.update(probs(*p)), vote.update(probs(*p))
    assert m.label == "Wave"  # mean of Wave = 0.633 > Walk 0.367
    assert v.label == "Walk"  # two of three windows voted Walk
    assert v.confidence == pytest.approx(1.1 / 3, rel=1e-5)  # mean probability of the voted label


def test_majority_tie_goes_to_the_higher_mean_probability():
    s = Smoother(LABELS, "majority", window=2)
    s.update(probs(0.6, 0.4, 0.0))
    out = s.update(probs(0.05, 0.95, 0.0))
    assert out.label == "Walk"


def test_threshold_gives_unknown_but_keeps_probabilities():
    s = Smoother(LABELS, "mean_prob", window=1, threshold=0.5)
    out = s.update(probs(0.4, 0.35, 0.25))
    assert out.label == "unknown"
    assert out.confidence == pytest.approx(0.4)
    np.testing.assert_allclose(out.probabilities, [0.4, 0.35, 0.25], rtol=1e-6)
    assert s.update(probs(0.5, 0.3, 0.2)).label == "Sit"  # at the threshold counts as confident


def test_custom_unknown_label_and_reset():
    s = Smoother(LABELS, "majority", window=4, threshold=0.9, unknown_label="Sit")
    s.update(probs(0.0, 1.0, 0.0))
    out = s.update(probs(0.0, 0.7, 0.3))  # Walk: mean 0.85, under 0.9
    assert out.label == "Sit" and out.raw_label == "Walk"
    s.reset()
    assert len(s) == 0
    assert s.update(probs(0.0, 0.0, 1.0)).label == "Wave"


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="method"):
        Smoother(LABELS, "median")
    with pytest.raises(ValueError, match="window"):
        Smoother(LABELS, window=0)
    with pytest.raises(ValueError, match="threshold"):
        Smoother(LABELS, threshold=1.5)
    with pytest.raises(ValueError, match="3 class probabilities"):
        Smoother(LABELS).update(probs(0.5, 0.5))
