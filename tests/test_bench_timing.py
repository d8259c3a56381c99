"""edge_har/core/timing.py: the one timing loop every suite uses."""

from __future__ import annotations

import numpy as np
import pytest

from edge_har.core.timing import p50_mean_us, time_calls


def test_runs_count_cycle_inputs_and_prepare_is_untimed() -> None:
    seen: list[int] = []
    prepared: list[int] = []
    times = time_calls(seen.append, [0, 1, 2], warmup=2, runs=4, prepare=prepared.append)
    assert times.shape == (4,) and (times >= 0).all()
    assert seen == [0, 1, 2, 0, 1, 2] and prepared == seen  # inputs cycle from the first warm-up call


def test_time_budget_gives_at_least_min_runs() -> None:
    times = time_calls(lambda x: None, [0], warmup=0, runs=None, min_seconds=0.0, min_runs=5)
    assert len(times) == 5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        time_calls(lambda x: None, [0], warmup=0, runs=None)
    with pytest.raises(ValueError):
        time_calls(lambda x: None, [], warmup=0, runs=1)


def test_p50_mean_us() -> None:
    assert p50_mean_us(np.array([1e-6, 3e-6])) == {"p50_us": pytest.approx(2.0), "mean_us": pytest.approx(2.0)}
