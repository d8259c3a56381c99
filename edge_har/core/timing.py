"""The one timing loop every benchmark suite (and `edge-har tune`'s latency budget) uses.

The latency suite, the video suite, the per-op profiler, the int8 study and
the baseline share it so that a figure from one can be set beside a figure
from another: separate loops drift apart (cycling inputs from the first run or
from the first timed run; resetting LSTM state inside the timed region or
outside). What is timed is ``call(x)`` and nothing else;
``prepare(x)`` (set input tensors, reset the LSTM state) runs untimed just
before it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

MIN_TIMED_RUNS = 10  # a min_seconds budget never yields fewer runs than this


def time_calls(
    call: Callable[[Any], Any],
    inputs: Sequence[Any] | np.ndarray,
    warmup: int,
    runs: int | None,
    min_seconds: float | None = None,
    *,
    prepare: Callable[[Any], Any] | None = None,
    min_runs: int = MIN_TIMED_RUNS,
) -> np.ndarray:
    """Seconds per ``call(x)``: ``warmup`` untimed calls, then ``runs`` timed ones or at least ``min_seconds``.

    Inputs cycle through ``inputs`` from the first warm-up call on, so
    data-dependent cost (a delegate's fast path on zeros, say) is measured
    as the device meets it. ``prepare(x)``, when given, runs before every
    call, warm-up included, outside the timed region. With both ``runs``
    and ``min_seconds`` the first limit reached ends the loop; a time budget
    still gives at least ``min_runs`` calls.
    """
    if runs is None and min_seconds is None:
        raise ValueError("time_calls needs runs, min_seconds or both")
    n = len(inputs)
    if n == 0:
        raise ValueError("time_calls needs at least one input")
    for i in range(warmup):
        x = inputs[i % n]
        if prepare is not None:
            prepare(x)
        call(x)
    times: list[int] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    i = 0
    while True:
        x = inputs[(warmup + i) % n]
        if prepare is not None:
            prepare(x)
        t0 = clock()
        call(x)
        times.append(clock() - t0)
        i += 1
        if runs is not None and i >= runs:
            break
        if min_seconds is not None and i >= min_runs and time.perf_counter() - started >= min_seconds:
            break
    return np.asarray(times, dtype=np.float64) / 1e9


def time_invokes(interp: Any, feeds: Sequence[Sequence[tuple[int, np.ndarray]]], warmup: int, runs: int) -> np.ndarray:
    """Seconds per ``interp.invoke()`` alone, for an allocated raw TFLite interpreter.

    Each feed is the ``(tensor index, value)`` pairs of one run. Setting them
    and ``reset_all_variables()`` (the fused LSTM keeps its state in variable
    tensors; see edge_har.core.interpreter) happen untimed, so the figure is
    the kernels' cost only, comparable between whole models and single ops.
    """

    def prepare(feed: Sequence[tuple[int, np.ndarray]]) -> None:
        for index, value in feed:
            interp.set_tensor(index, value)
        interp.reset_all_variables()

    return time_calls(lambda _feed: interp.invoke(), feeds, warmup, runs, prepare=prepare)


def input_feeds(interp: Any, inputs: Sequence[np.ndarray]) -> list[list[tuple[int, np.ndarray]]]:
    """One feed per input array for a single-input interpreter (its first input tensor)."""
    index = interp.get_input_details()[0]["index"]
    return [[(index, x)] for x in inputs]


def p50_mean_us(seconds: np.ndarray) -> dict[str, float]:
    """The two figures the invoke-level tools report: median and mean, in microseconds."""
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "mean_us": float(us.mean())}
