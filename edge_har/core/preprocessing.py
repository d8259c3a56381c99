"""The one preprocessing path shared by training (``convert``) and the device daemon.

A model only works when the device feeds it windows prepared exactly as the
training windows were. Keeping scaling, resampling, windowing and normalisation
in this single module, and recording its parameters in ``bundle.json``, is what
makes the two sides unable to disagree. Nothing here imports TensorFlow.

Order of operations, everywhere:
    raw values -> value scaling (sensor code -> physical unit)
               -> resampling to the model's rate
               -> sliding windows (window, stride in samples at the model's rate)
               -> per-channel normalisation (mean, std from the training windows)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError


class PreprocessingError(EdgeHarError, ValueError):
    """Raised for inconsistent preprocessing parameters or input shapes."""


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn a raw sample stream into model input windows.

    ``scale`` and ``offset`` map raw sensor codes to physical units
    (``value = raw * scale + offset``), per channel or one for all. The HMP
    data set, for example, codes -1.5 g..+1.5 g as 0..63, so scale = 3/63 and
    offset = -1.5. ``mean`` and ``std`` are computed on the scaled training
    windows, one per channel.
    """

    sample_rate_hz: float
    window: int
    stride: int
    channels: tuple[str, ...]
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    units: str = ""

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0:
            raise PreprocessingError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        if self.window < 1:
            raise PreprocessingError(f"window must be >= 1 sample, got {self.window}")
        if self.stride < 1:
            raise PreprocessingError(f"stride must be >= 1 sample, got {self.stride}")
        if not self.channels:
            raise PreprocessingError("channels must name at least one channel")
        n = len(self.channels)
        for name in ("scale", "offset", "mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) not in (1, n):
                raise PreprocessingError(f"{name} has {len(value)} values; expected 1 or one per channel ({n})")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise PreprocessingError(f"std must be > 0 for every channel, got {list(self.std)}")

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate_hz

    @property
    def stride_seconds(self) -> float:
        return self.stride / self.sample_rate_hz

    def with_normalisation(
        self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray
    ) -> Preprocessing:
        return Preprocessing(
            sample_rate_hz=self.sample_rate_hz,
            window=self.window,
            stride=self.stride,
            channels=self.channels,
            scale=self.scale,
            offset=self.offset,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            units=self.units,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "window": self.window,
            "stride": self.stride,
            "window_seconds": self.window_seconds,
            "stride_seconds": self.stride_seconds,
            "channels": list(self.channels),
            "channel_order": "as listed; column i of each sample is channels[i]",
            "value_scaling": {
                "formula": "value = raw * scale + offset",
                "scale": list(self.scale),
                "offset": list(self.offset),
                "units": self.units,
            },
            "normalisation": None
            if self.mean is None
            else {
                "formula": "(value - mean) / std, per channel",
                "mean": list(self.mean),
                "std": list(self.std or ()),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "preprocessing") -> Preprocessing:
        """Build from the ``preprocessing`` object of ``bundle.json``, naming the bad key."""

        def need(mapping: Any, key: str, path: str) -> Any:
            if not isinstance(mapping, Mapping):
                raise PreprocessingError(f"{where}: '{path.rstrip('.') or 'preprocessing'}' must be an object")
            if key not in mapping:
                raise PreprocessingError(f"{where}: missing key '{path}{key}'")
            return mapping[key]

        def bad(key: str, expected: str, value: Any) -> PreprocessingError:
            return PreprocessingError(f"{where}: '{key}' must be {expected}, got {value!r}")

        def number(value: Any, key: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(key, "a number", value)
            return float(value)

        def whole(value: Any, key: str) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise bad(key, "a whole number", value)
            return int(value)

        def numbers(value: Any, key: str) -> tuple[float, ...]:
            if not isinstance(value, (list, tuple)):  # a bare string or number is not a per-channel list
                raise bad(key, "a list of numbers", value)
            return tuple(number(v, f"{key}[{i}]") for i, v in enumerate(value))

        channels = need(data, "channels", "")
        if not isinstance(channels, (list, tuple)) or not all(isinstance(c, str) for c in channels):
            raise bad("channels", "a list of channel names", channels)
        scaling = need(data, "value_scaling", "")
        norm = data.get("normalisation")
        return cls(
            sample_rate_hz=number(need(data, "sample_rate_hz", ""), "sample_rate_hz"),
            window=whole(need(data, "window", ""), "window"),
            stride=whole(need(data, "stride", ""), "stride"),
            channels=tuple(channels),
            scale=numbers(need(scaling, "scale", "value_scaling."), "value_scaling.scale"),
            offset=numbers(need(scaling, "offset", "value_scaling."), "value_scaling.offset"),
            mean=None if norm is None else numbers(need(norm, "mean", "normalisation."), "normalisation.mean"),
            std=None if norm is None else numbers(need(norm, "std", "normalisation."), "normalisation.std"),
            units=str(scaling.get("units", "")),
        )


# ---------------------------------------------------------------- batch functions


def _as_2d(samples: np.ndarray, n_channels: int, what: str = "samples") -> np.ndarray:
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 1 and n_channels == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_channels:
        raise PreprocessingError(f"{what} must have shape (n, {n_channels}) for channels; got {arr.shape}")
    return arr


def scale_values(samples: np.ndarray, pre: Preprocessing) -> np.ndarray:
    arr = _as_2d(samples, pre.n_channels)
    return arr * np.asarray(pre.scale, np.float32) + np.asarray(pre.offset, np.float32)


def resample(samples: np.ndarray, src_rate_hz: float, dst_rate_hz: float) -> np.ndarray:
    """Linear-interpolation resampling of a whole recording.

    Output sample k sits at time k / dst_rate; samples are produced while that
    time is within the input's span. ``StreamResampler`` yields exactly these
    values incrementally, so a sensor at another rate feeds the model the same
    windows the training saw.
    """
    arr = np.asarray(samples, dtype=np.float32)
    if src_rate_hz <= 0 or dst_rate_hz <= 0:
        raise PreprocessingError(f"rates must be > 0, got {src_rate_hz} -> {dst_rate_hz}")
    if src_rate_hz == dst_rate_hz or len(arr) == 0:
        return arr.copy()
    n_out = int(np.floor((len(arr) - 1) * dst_rate_hz / src_rate_hz + 1e-9)) + 1
    pos = np.arange(n_out, dtype=np.float64) * (src_rate_hz / dst_rate_hz)
    src_idx = np.arange(len(arr), dtype=np.float64)
    out = np.empty((n_out, arr.shape[1]), dtype=np.float32)
    for c in range(arr.shape[1]):
        out[:, c] = np.interp(pos, src_idx, arr[:, c])
    return out


def window_count(n_samples: int, window: int, stride: int) -> int:
    return 0 if n_samples < window else (n_samples - window) // stride + 1


def make_windows(samples: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(n, C) -> (n_windows, window, C); a copy, so callers may modify it."""
    arr = np.asarray(samples, dtype=np.float32)
    count = window_count(len(arr), window, stride)
    if count == 0:
        return np.empty((0, window, arr.shape[1]), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(arr, window, axis=0)  # (n-w+1, C, w)
    return np.ascontiguousarray(view[::stride][:count].transpose(0, 2, 1))


def fit_normalisation(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over (n, window, C) training windows; std floored."""
    arr = np.asarray(windows, dtype=np.float64)
    mean = arr.mean(axis=(0, 1))
    std = arr.std(axis=(0, 1))
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def normalise(windows: np.ndarray, pre: Preprocessing) -> np.ndarray:
    arr = np.asarray(windows, dtype=np.float32)
    if pre.mean is None or pre.std is None:
        return arr
    return (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)


def denormalise(windows: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Normalised windows back in physical units (what the event stage reads and what a page draws)."""
    arr = np.asarray(windows, dtype=np.float32)
    if pre.std is None:
        return arr
    mean = np.zeros(len(pre.std), np.float32) if pre.mean is None else np.asarray(pre.mean, np.float32)
    return arr * np.asarray(pre.std, np.float32) + mean


def recording_to_windows(
    raw: np.ndarray, pre: Preprocessing, source_rate_hz: float | None = None, normalised: bool = True
) -> np.ndarray:
    """The training-side path: a whole raw recording to model-ready windows."""
    values = scale_values(raw, pre)
    if source_rate_hz is not None and source_rate_hz != pre.sample_rate_hz:
        values = resample(values, source_rate_hz, pre.sample_rate_hz)
    windows = make_windows(values, pre.window, pre.stride)
    return normalise(windows, pre) if normalised else windows


# ---------------------------------------------------------------- streaming


class StreamResampler:
    """Incremental twin of :func:`resample`: same output values, chunk by chunk."""

    def __init__(self, src_rate_hz: float, dst_rate_hz: float, n_channels: int) -> None:
        if src_rate_hz <= 0 or dst_rate_hz <= 0:
            raise PreprocessingError(f"rates must be > 0, got {src_rate_hz} -> {dst_rate_hz}")
        self.step = src_rate_hz / dst_rate_hz  # input samples per output sample
        self.passthrough = src_rate_hz == dst_rate_hz
        self.n_channels = n_channels
        self._next_pos = 0.0  # position of the next output sample, in input-sample units
        self._seen = 0  # input samples consumed so far
        self._last: np.ndarray | None = None  # last input sample of the previous chunk

    def push(self, samples: np.ndarray) -> np.ndarray:
        arr = _as_2d(samples, self.n_channels)
        if self.passthrough or len(arr) == 0:
            return arr
        if self._last is not None:
            arr_ext = np.vstack([self._last[None, :], arr])
            base = self._seen - 1
        else:
            arr_ext = arr
            base = self._seen
        last_index = self._seen + len(arr) - 1
        n_out = int(np.floor((last_index - self._next_pos) / self.step + 1e-9)) + 1
        n_out = max(n_out, 0)
        out = np.empty((n_out, self.n_channels), dtype=np.float32)
        if n_out:
            pos = self._next_pos + np.arange(n_out) * self.step
            local = pos - base
            idx = np.arange(len(arr_ext), dtype=np.float64)
            for c in range(self.n_channels):
                out[:, c] = np.interp(local, idx, arr_ext[:, c])
            self._next_pos = float(pos[-1] + self.step)
        self._seen += len(arr)
        self._last = arr[-1].copy()
        return out


class StreamWindower:
    """Sliding windows over an unbounded stream, with the same boundaries as :func:`make_windows`.

    Only the last ``window - 1`` samples are kept between pushes, so memory
    stays constant however long the daemon runs.
    """

    def __init__(self, window: int, stride: int, n_channels: int) -> None:
        self.window = window
        self.stride = stride
        self.n_channels = n_channels
        self.reset()

    @property
    def samples_seen(self) -> int:
        return self._total

    def reset(self) -> None:
        """Forget the partial window, e.g. after a gap in the source."""
        self._tail = np.zeros((0, self.n_channels), dtype=np.float32)
        self._total = 0
        self._next_end = self.window

    def push(self, samples: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Return ``(window, end_index)`` for each window completed by these samples.

        ``end_index`` counts samples since the start (or the last reset), so
        ``end_index / sample_rate`` is the window's end time in stream time.
        """
        arr = _as_2d(samples, self.n_channels)
        data = np.concatenate([self._tail, arr]) if len(self._tail) else arr
        first = self._total - len(self._tail)  # stream index of data[0]
        self._total += len(arr)
        out = []
        while self._next_end <= self._total:
            stop = self._next_end - first
            out.append((data[stop - self.window : stop].copy(), self._next_end))
            self._next_end += self.stride
        keep = min(self.window - 1, len(data))
        self._tail = data[len(data) - keep :].copy() if keep else data[:0].copy()
        return out


class StreamPreprocessor:
    """The device-side path: raw sample chunks in, normalised model windows out."""

    def __init__(
        self,
        pre: Preprocessing,
        source_rate_hz: float | None = None,
        scale: Sequence[float] | None = None,
        offset: Sequence[float] | None = None,
    ) -> None:
        # A source may deliver physical units already (e.g. an IMU driver in g):
        # it then overrides the training data's raw-code scaling.
        if scale is not None or offset is not None:
            pre = Preprocessing(
                sample_rate_hz=pre.sample_rate_hz,
                window=pre.window,
                stride=pre.stride,
                channels=pre.channels,
                scale=tuple(scale) if scale is not None else pre.scale,
                offset=tuple(offset) if offset is not None else pre.offset,
                mean=pre.mean,
                std=pre.std,
                units=pre.units,
            )
        self.pre = pre
        self.source_rate_hz = source_rate_hz or pre.sample_rate_hz
        self.resampler = StreamResampler(self.source_rate_hz, pre.sample_rate_hz, pre.n_channels)
        self.windower = StreamWindower(pre.window, pre.stride, pre.n_channels)

    def reset(self) -> None:
        self.resampler = StreamResampler(self.source_rate_hz, self.pre.sample_rate_hz, self.pre.n_channels)
        self.windower.reset()

    def push(self, raw: np.ndarray) -> list[np.ndarray]:
        values = scale_values(raw, self.pre)
        values = self.resampler.push(values)
        return [normalise(w, self.pre) for w, _ in self.windower.push(values)]
