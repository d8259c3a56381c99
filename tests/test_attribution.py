"""Occlusion attribution (edge_har.core.attribution) on models whose answer is written down, and its edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_har.core.attribution import (
    agreement,
    occlusion,
    occlusion_calls,
    positive_mass,
    segment_edges,
    to_cells,
)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def pulse_model(channel: int, start: int, stop: int):
    """Class 1's logit is the mean of ``channel`` over ``start:stop``; nothing else counts."""

    def predict(window: np.ndarray) -> np.ndarray:
        return softmax(np.array([0.0, 4.0 * float(window[start:stop, channel].mean())]))

    return predict


@given(window=st.integers(1, 400), segment=st.one_of(st.none(), st.integers(1, 500)))
@settings(max_examples=60, deadline=None)
def test_segments_cover_the_window_once(window, segment):
    edges = segment_edges(window, segment)
    assert edges[0] == 0 and edges[-1] == window
    assert np.all(np.diff(edges) >= 1)
    if segment is None:
        assert len(edges) - 1 == min(16, window) or len(edges) - 1 <= 16


def test_occlusion_puts_everything_on_the_cells_the_model_reads():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.2, size=(64, 3)).astype(np.float32)
    x[24:40, 1] += 2.0
    result = occlusion(pulse_model(1, 24, 40), x, segment=4)
    assert result.target == 1 and result.probability > 0.9
    # Cells that no patch over the pulse reaches carry exactly nothing; the pulse's cells the most.
    assert np.all(result.cells[:, [0, 2]] == 0)
    assert positive_mass(result.cells, slice(6, 10), [1]) > 0.6
    assert result.cells[6:10, 1].min() > result.cells[:3, 1].max()
    assert result.calls == occlusion_calls(16, 3) == 1 + 3 * (16 + 15 + 13)
    assert result.per_sample().shape == (64, 3)
    assert np.allclose(result.per_channel(), result.cells.sum(axis=0))
    document = result.to_json()
    assert document["method"] == "occlusion" and len(document["cells"]) == 16


def test_occlusion_explains_a_chosen_class_and_is_deterministic():
    x = np.zeros((32, 2), np.float32)
    x[8:16, 0] = 1.5
    model = pulse_model(0, 8, 16)
    first = occlusion(model, x, target=0)
    again = occlusion(model, x, target=0)
    assert np.array_equal(first.cells, again.cells)
    # Hiding the pulse makes class 0 *more* likely: negative attribution.
    assert first.cells[4:8, 0].min() < 0
    assert np.allclose(first.cells, -occlusion(model, x, target=1).cells, atol=1e-6)


@pytest.mark.parametrize(
    "window, kwargs, message",
    [
        (np.zeros((8,), np.float32), {}, "one \\(time, channels\\) window"),
        (np.full((8, 2), np.nan, np.float32), {}, "NaN or infinite"),
        (np.zeros((8, 2), np.float32), {"target": 5}, "target: class 5; the model has 2 classes"),
        (np.zeros((8, 2), np.float32), {"scales": ()}, "scales"),
        (np.zeros((8, 2), np.float32), {"segment": 0}, "segment: 0"),
    ],
)
def test_occlusion_refuses_what_it_cannot_explain_in_one_line(window, kwargs, message):
    with pytest.raises(ValueError, match=message):
        occlusion(pulse_model(0, 0, 4), window, **kwargs)


@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=8, max_size=8),
    split=st.integers(1, 7),
)
@settings(max_examples=50, deadline=None)
def test_cells_sum_samples_and_mass_is_a_share(values, split):
    per_sample = np.asarray(values, np.float32).reshape(8, 1)
    cells = to_cells(per_sample, np.array([0, split, 8]))
    assert np.allclose(cells.sum(), per_sample.sum(), rtol=1e-4, atol=1e-2)
    share = positive_mass(cells, slice(0, 1), [0])
    assert 0.0 <= share <= 1.0
    assert agreement(cells, cells) == pytest.approx(1.0) or not np.any(cells)


def test_occlusion_runs_through_every_variant_of_a_real_bundle(tiny_bundle):
    """No TensorFlow needed: the device's interpreter, any variant (CI runs this with tflite-runtime too)."""
    from edge_har.core.bundle import Bundle
    from edge_har.core.interpreter import select_backend

    bundle = Bundle.load(tiny_bundle)
    window = np.random.default_rng(3).normal(size=bundle.input_shape[1:]).astype(np.float32)
    # tflite-runtime 2.14 cannot load dynamic-range files (README, Install): the others it can.
    old_runtime = select_backend().name == "tflite_runtime"
    for variant in [v for v in bundle.variants if not (old_runtime and v == "dynamic_range")]:
        model = bundle.load_model(variant, num_threads=1)
        result = occlusion(model.predict, window)
        assert result.target == int(model.predict(window).argmax())
        assert np.isfinite(result.cells).all() and result.cells.shape == (16, bundle.input_shape[2])
        assert result.calls == occlusion_calls(16, bundle.input_shape[2])
        assert np.array_equal(result.cells, occlusion(model.predict, window).cells), variant
