"""Training windows cut from a :class:`~edge_har.core.formats.base.Dataset` with the device's own
preprocessing (:func:`edge_har.core.preprocessing.recording_to_windows`), so ``convert``,
``evaluate``, the benchmarks and a replay agree window for window."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edge_har.core.formats.base import Dataset
from edge_har.core.preprocessing import Preprocessing, PreprocessingError, recording_to_windows
from edge_har.core.recordings import RecordingError

log = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """Training windows: scaled to physical units and resampled, but NOT normalised.

    Normalisation statistics must come from the training windows only, so the
    caller fits them after the split (``edge_har.core.preprocessing.fit_normalisation``).
    """

    x: np.ndarray  # (n, window, C) float32
    y: np.ndarray  # (n,) int64 label index into dataset.labels
    groups: np.ndarray  # (n,) int64 recording index into dataset.recordings
    subjects: np.ndarray  # (n,) object: subject id or None
    skipped_short: list[str] = field(default_factory=list)  # sources of recordings shorter than one window


def log_resampling(
    dataset: Dataset, rate_hz: float, recording_indices: Sequence[int] | np.ndarray | None = None
) -> None:
    """Say in one line which recordings are resampled to the model's ``rate_hz``, and from which rates.

    Resampling changes the number of samples and windows, so a command that does it says so
    (as the device's runtime does when a replay's rate differs) rather than leave a count that
    does not match the files unexplained. Nothing is said when every rate is the model's.
    """
    indices = range(len(dataset.recordings)) if recording_indices is None else [int(i) for i in recording_indices]
    rates = Counter(float(dataset.recordings[i].sample_rate_hz or dataset.sample_rate_hz) for i in indices)
    other = sorted((rate, n) for rate, n in rates.items() if rate != rate_hz)
    if other:
        log.info(
            "resampling %s to the model's %g Hz (linear interpolation, as the device does)",
            " and ".join(f"{n} recording{'' if n == 1 else 's'} at {rate:g} Hz" for rate, n in other),
            rate_hz,
        )


def make_window_set(
    dataset: Dataset,
    pre: Preprocessing,
    recording_indices: Sequence[int] | np.ndarray | None = None,
    *,
    skip_short: bool = False,
) -> WindowSet:
    """Windows of the chosen recordings (default: all) through ``recording_to_windows``, the device's code.

    A recording at another rate than ``pre.sample_rate_hz`` is resampled
    there. A recording shorter than one window is a ``RecordingError`` naming
    it and both lengths, unless ``skip_short`` (then one warning with the count).
    """
    indices = range(len(dataset.recordings)) if recording_indices is None else [int(i) for i in recording_indices]
    index = dataset.label_index()
    xs, ys, gs, ss = [], [], [], []
    short: list[str] = []
    for i in indices:
        rec = dataset.recordings[i]
        rate = float(rec.sample_rate_hz or dataset.sample_rate_hz)
        try:
            windows = recording_to_windows(rec.samples, pre, source_rate_hz=rate, normalised=False)
        except PreprocessingError as exc:
            raise RecordingError(f"{rec.source}: {exc} (model channels: {', '.join(pre.channels)})") from exc
        if len(windows) == 0:
            if not skip_short:
                resampled = ""
                if rate != pre.sample_rate_hz:
                    n_model = int(np.floor((len(rec) - 1) * pre.sample_rate_hz / rate + 1e-9)) + 1
                    resampled = f", {n_model} after resampling to the model's {pre.sample_rate_hz:g} Hz"
                hint = (
                    f"; this data set comes in windows of {dataset.native_window} samples"
                    if dataset.native_window
                    else ""
                )
                raise RecordingError(
                    f"{rec.source}: {len(rec)} samples at {rate:g} Hz{resampled}, shorter than one window of "
                    f"{pre.window} samples ({pre.window_seconds:g} s){hint}; use a shorter --window, or --skip-short "
                    "to leave such recordings out"
                )
            short.append(rec.source)
            continue
        xs.append(windows)
        ys.append(np.full(len(windows), index[rec.label], np.int64))
        gs.append(np.full(len(windows), i, np.int64))
        ss.append(np.full(len(windows), rec.subject, dtype=object))
    if short:
        log.warning(
            "skipped %d recording(s) shorter than one window of %d samples (e.g. %s)", len(short), pre.window, short[0]
        )
    if not xs:
        empty = np.empty((0, pre.window, pre.n_channels), np.float32)
        return WindowSet(empty, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, object), short)
    return WindowSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), np.concatenate(ss), short)
