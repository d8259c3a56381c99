"""Augmentation of sensor windows: each transform does what it says, repeatably, and training uses it.

The transforms are checked on numbers with a known answer (a rotation keeps every triplet's
length in sensor units, a time warp keeps both ends and a constant signal, probability 0
changes nothing); the ``--augment`` text is fuzzed; a real (small) training runs with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_har.convert.augment import (
    DEFAULT,
    LIMITS,
    AugmentConfig,
    Augmenter,
    AugmentError,
    from_json,
    parse_augment,
    rotation_matrix,
    time_warp,
)


def test_the_spec_text_gives_the_documented_configs():
    assert parse_augment(None) == parse_augment("none") == AugmentConfig()
    assert not AugmentConfig().enabled and DEFAULT.enabled
    assert parse_augment("default") == DEFAULT
    mixed = parse_augment("default,mixup=0.2,probability=1")
    assert mixed.mixup == 0.2 and mixed.probability == 1.0 and mixed.rotate == DEFAULT.rotate
    assert parse_augment("jitter=0.03, rotate=30") == AugmentConfig(jitter=0.03, rotate=30.0)
    assert from_json(mixed.to_json()) == mixed and from_json(None) == AugmentConfig()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("jiter=0.1", "'jiter=0.1' is not KEY=VALUE"),
        ("rotate", "'rotate' is not KEY=VALUE"),
        ("scale=big", "scale='big' is not a number"),
        ("rotate=200", "rotate must be in [0, 180], got 200"),
        ("jitter=nan", "jitter must be in"),
    ],
)
def test_a_bad_spec_names_the_key(text, says):
    with pytest.raises(AugmentError, match=None) as info:
        parse_augment(text)
    assert says in str(info.value) and str(info.value).startswith("--augment ")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_=,.-0123456789 e", max_size=40))
def test_any_spec_text_is_a_config_within_limits_or_one_error(text):
    try:
        config = parse_augment(text)
    except AugmentError as exc:
        assert "\n" not in str(exc)
        return
    for key, (low, high) in LIMITS.items():
        assert low <= getattr(config, key) <= high


def test_a_rotation_keeps_each_triplets_length_in_sensor_units():
    rng = np.random.default_rng(0)
    mean, std = np.array([0.1, 9.8, -0.2, 0.0, 0.0, 0.0]), np.array([2.0, 3.0, 1.5, 0.5, 0.5, 0.4])
    raw = rng.normal(size=(50, 6)) * 3
    window = ((raw - mean) / std).astype(np.float32)
    aug = Augmenter(AugmentConfig(rotate=90.0, probability=1.0), 6, mean, std)
    out = aug.window(window, rng) * std + mean
    for k in (0, 1):
        before = np.linalg.norm(raw[:, 3 * k : 3 * k + 3], axis=1)
        after = np.linalg.norm(out[:, 3 * k : 3 * k + 3], axis=1)
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)
    assert np.abs(out - raw).max() > 0.1  # it did turn
    r = rotation_matrix(np.array([0.0, 0.0, 1.0]), math.pi / 2)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_a_time_warp_keeps_length_ends_and_a_constant_signal():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 1, 64)[:, None].repeat(2, axis=1)
    warped = time_warp(ramp, rng, 0.5)
    assert warped.shape == ramp.shape
    np.testing.assert_allclose(warped[[0, -1]], ramp[[0, -1]], atol=1e-9)
    assert np.all(np.diff(warped[:, 0]) >= -1e-12) and np.abs(warped - ramp).max() > 1e-3  # still rising, moved
    np.testing.assert_allclose(time_warp(np.full((64, 3), 2.5), rng, 0.5), 2.5)


def test_probability_zero_changes_nothing_and_the_draws_repeat_by_seed():
    x = np.random.default_rng(2).normal(size=(8, 32, 3)).astype(np.float32)
    y = np.arange(8) % 3
    off = Augmenter(
        AugmentConfig(jitter=0.5, scale=0.5, rotate=90, time_warp=0.5, magnitude_warp=0.5, probability=0), 3
    )
    np.testing.assert_array_equal(off.batch(x, y, 3, np.random.default_rng(0))[0], x)
    on = Augmenter(parse_augment("default,probability=1"), 3)
    a = on.batch(x, y, 3, np.random.default_rng([5, 0, 0]))[0]
    b = on.batch(x, y, 3, np.random.default_rng([5, 0, 0]))[0]
    c = on.batch(x, y, 3, np.random.default_rng([5, 1, 0]))[0]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - x).max() > 0.01 and np.abs(a - c).max() > 0.01


def test_mixup_mixes_windows_and_labels_alike_keeping_the_major_part():
    x = np.stack([np.full((4, 1), float(i)) for i in range(6)]).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    xb, yb = Augmenter(AugmentConfig(mixup=0.4), 1).batch(x, y, 3, np.random.default_rng(3))
    assert yb.shape == (6, 3)
    np.testing.assert_allclose(yb.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(6):
        lam = yb[i, y[i]] if yb[i, y[i]] >= 0.5 else None
        assert lam is not None  # each window keeps at least half of itself
    # the window's value is the same mix of the two values as its label row
    assert np.all(xb.min(axis=(1, 2)) >= 0) and np.all(xb.max(axis=(1, 2)) <= 5)


@pytest.mark.slow
def test_training_with_augmentation_and_mixup_learns_and_records_it(tmp_path):
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.train import TrainConfig, TrainingError, train_model
    from tests.test_train import sine_windows

    x, y = sine_windows(192, seed=1)
    xv, yv = sine_windows(48, seed=2)
    config = TrainConfig(
        epochs=10,
        batch_size=32,
        patience=10,
        learning_rate=5e-3,
        seed=3,
        verbose=0,
        augment=parse_augment("default,mixup=0.2"),
    )
    result = train_model(x, y, xv, yv, 3, ModelConfig(conv_filters=(8,), lstm_units=(8,)), config, tmp_path)
    assert result.epochs_run == 10 and result.history["loss"][-1] < result.history["loss"][0]
    accuracy = float((result.model.predict(xv, verbose=0).argmax(axis=1) == yv).mean())
    assert accuracy > 0.5  # three classes: chance is a third
    assert TrainConfig(**config.to_json()).augment == config.augment  # read back from bundle.json
    with pytest.raises(TrainingError, match="--augment transforms sensor windows"):
        train_model(x[:, :, :, None], y, xv[:, :, :, None], yv, 3, ModelConfig(), config, tmp_path, lambda: None)


@pytest.mark.parametrize("length", [8, 64, 128, 300])
def test_the_curve_matrix_is_interpolation_then_the_moving_average(length):
    """The batched warp curves are the ones written step by step: np.interp through the knots, then a box filter."""
    from edge_har.convert.augment import WARP_KNOTS, _curve_matrix

    knots = np.random.default_rng(length).normal(1.0, 0.3, size=(WARP_KNOTS + 2, 2))
    where = np.linspace(0, length - 1, WARP_KNOTS + 2)
    curve = np.stack([np.interp(np.arange(length), where, knots[:, c]) for c in range(2)], axis=1)
    width = max(1, length // (WARP_KNOTS + 1))
    pad = np.pad(curve, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    expected = np.stack([np.convolve(pad[:, c], np.ones(width) / width, mode="valid") for c in range(2)], axis=1)
    np.testing.assert_allclose(_curve_matrix(length) @ knots, expected, rtol=1e-10, atol=1e-12)


def test_a_batch_rotates_each_window_by_its_own_rotation():
    from edge_har.convert.augment import rotation_matrices

    rng = np.random.default_rng(4)
    r = rotation_matrices(rng.normal(size=(5, 3)), rng.uniform(-1, 1, size=5))
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)
    aug = Augmenter(AugmentConfig(rotate=90, probability=1.0), 3)
    x = rng.normal(size=(16, 32, 3)).astype(np.float32)
    out = aug.windows(x, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(out, axis=2), np.linalg.norm(x, axis=2), rtol=1e-5)
    fitted = [np.linalg.lstsq(x[i], out[i], rcond=None)[0] for i in range(2)]  # out_i = x_i @ R_i.T
    assert not np.allclose(fitted[0], fitted[1], atol=1e-3)  # each window has its own rotation
