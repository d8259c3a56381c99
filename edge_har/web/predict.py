"""Predictions from an uploaded file: ``GET /api/info``, ``POST /api/predict`` and the Predict page.

Every upload goes through the code the device runs, so a prediction here is the one the Pi would
make on the same data:

* a **sensor** bundle takes a recording (CSV, semicolon or white-space columns, read by
  :func:`edge_har.core.recordings.read_samples_result`, the reader training and the replay source
  use) or a JSON array of samples; the samples go through the device's
  :class:`~edge_har.device.runtime.Windowing` (value scaling, resampling, windows, normalisation
  from ``edge_har.core.preprocessing``) and every window through the interpreter;
* a recording is read the way training read the data set: the bundle's reader record
  (``provenance.dataset.reader`` in bundle.json) says which of the file's columns are the
  channels (``columns``), whether malformed lines are skipped (``skip_bad``) and the rate the files
  were made at, so a file of the raw training set gives the windows ``edge-har evaluate`` cuts
  from it, bit for bit. A file of just the model's channels is taken as it is when the record's
  column choice cannot apply to it; a bundle without a record reads every column at the model's
  rate. Training files resampled by their timestamps are not re-read here: such a bundle takes a
  file of just its channels at a regular rate (its data set's rate unless ``sample_rate_hz``
  says otherwise), and refuses a wider one, rather than pick columns the timestamp shifted;
* a **video** bundle takes a short clip: frames are kept at the bundle's rate and run through the
  encoder and the temporal head exactly as the camera daemon does
  (:class:`~edge_har.device.video_runtime.VideoRuntime`);
* a **still-image** bundle (a video bundle in ``image-seq`` mode, one frame per prediction) takes
  one image, decoded by OpenCV as the camera's frames are.

Smoothing is off (a window of one): the reply shows what each window alone says, and the summary
says what most windows said. Interpreter calls run in the thread pool, one request at a time per
loaded model (a TFLite interpreter is not thread-safe), so the event loop keeps serving the
pages, the live stream and other models meanwhile.

Everything a user can get wrong is a 4xx with one line naming it: the wrong kind of file (415),
an upload over ``--max-upload-mb`` (413, counted while the body streams in, so a huge upload is
cut off at the limit instead of being read first), a recording too short for one window or with
the wrong number of columns, an unreadable image or clip (422).

No field can make the work or the reply grow faster than the upload: a recording is resampled up
to the model's rate by at most :data:`MAX_UPSAMPLE` times (a tiny ``sample_rate_hz`` would turn a
few kB into millions of samples), one request predicts at most :data:`MAX_WINDOWS` windows (counted
from the sample count before any work), a clip at most :data:`MAX_CLIP_FRAMES` frames, an image or a
frame at most :data:`MAX_FRAME_PIXELS` pixels (read from the header, before decoding), and the text
fields are short. The bounds are stated in ``/openapi.json`` and ``/api/info``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.errors import EdgeHarError
from edge_har.core.formats.base import DatasetError, ReaderRecord
from edge_har.core.formats.common import recorded_columns
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel
from edge_har.core.preprocessing import PreprocessingError, window_count
from edge_har.core.recordings import RecordingError, read_samples_result
from edge_har.device.runtime import Runtime
from edge_har.device.runtime_api import Window
from edge_har.device.smoothing import Smoother
from edge_har.web.config import ServeConfig
from edge_har.web.image_size import declared_size

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

RECORDING_SUFFIXES = (".csv", ".txt", ".tsv", ".dat")
JSON_SUFFIXES = (".json",)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
KIND_ACCEPTS = {
    "sensor": RECORDING_SUFFIXES + JSON_SUFFIXES,
    "video": VIDEO_SUFFIXES,
    "still-image": IMAGE_SUFFIXES,
}
KIND_DESCRIBES = {
    "sensor": "a CSV/whitespace recording (.csv, .txt) or a JSON array of samples (.json)",
    "video": "a short video clip (" + ", ".join(VIDEO_SUFFIXES) + ")",
    "still-image": "an image (" + ", ".join(IMAGE_SUFFIXES) + ")",
}
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file, on top of the file limit
MAX_CLIP_FRAMES = 20_000  # frames decoded from one clip (13 min at 25 fps): a "short clip", whatever its byte size
MAX_FRAME_PIXELS = 4096 * 4096  # an image or a clip's frame (16.8 MP: a phone photo; 50 MB decoded)
MAX_WINDOWS = 10_000  # windows one request predicts and returns (83 min at a 0.5 s stride; a reply of a few MB)
MAX_UPSAMPLE = 16  # a recording's rate may be at most this many times lower than the model's
MAX_RATE_HZ = 100_000.0  # the highest sample_rate_hz taken (no sensor this serves samples faster)
MAX_MODEL_ID_CHARS = 128  # a model id as bundle.json holds it
MAX_FILENAME_CHARS = 255  # a file name any file system allows
MAX_FIELD_BYTES = 4096  # a text field of the form (model_id, sample_rate_hz); the file has its own limit


# ---------------------------------------------------------------------------- response models


class TensorInfo(BaseModel):
    shape: List[int]
    dtype: Optional[str] = None
    layout: Optional[str] = None


class InterpreterInfo(BaseModel):
    backend: str = Field(description="ai_edge_litert, tflite_runtime or tf_lite")
    version: str


class BundleInfo(BaseModel):
    """One loaded bundle, as the device would run it."""

    model_id: str
    kind: str = Field(description="sensor, video or still-image")
    labels: List[str]
    input: TensorInfo
    preprocessing: Dict[str, Any] = Field(description="bundle.json's preprocessing (rate, window, stride, scaling...)")
    variant: str = Field(description="the variant loaded")
    variants: List[str] = Field(description="every variant the bundle has")
    quantization: str
    interpreter: InterpreterInfo
    accepts: List[str] = Field(description="file name endings POST /api/predict takes for this bundle")
    window_seconds: float
    recording_rate_hz: float = Field(
        description="the rate an uploaded recording is taken to have without sample_rate_hz: the rate the "
        "training data was read at (bundle.json's reader record), else the model's"
    )
    recording_columns: Optional[List[str]] = Field(
        None, description="the columns of an uploaded recording that are the channels, as training chose them"
    )


class InfoResponse(BaseModel):
    bundles: List[BundleInfo]
    max_upload_bytes: int
    max_windows: int = Field(description="windows one POST /api/predict predicts at most")
    max_upsample: int = Field(description="how many times lower than the model's a recording's rate may be")
    auth: bool = Field(description="whether every route needs the shared secret")


class WindowPrediction(BaseModel):
    """What one window (or one image) alone says."""

    index: int
    start_s: float = Field(description="window start, seconds from the start of the upload")
    end_s: float
    label: str
    confidence: float
    probabilities: Dict[str, float]
    latency_ms: float = Field(description="interpreter time for this window (encoder frames + head for video)")


class Summary(BaseModel):
    windows: int
    majority_label: str
    majority_windows: int = Field(description="how many windows say the majority label")
    majority_share: float = Field(description="share of windows whose label is the majority label")
    shares: Dict[str, float] = Field(description="share of windows per label")
    mean_latency_ms: float
    p50_latency_ms: float


class Segment(BaseModel):
    """Consecutive windows with one label, merged: what the recording did from ``start_s`` to ``end_s``.

    Windows overlap when the stride is shorter than the window, so a segment's edges are placed
    halfway between the centres of the last window of one label and the first of the next: the
    segments tile the recording from the first window's start to the last window's end, in order,
    without overlap, and their durations add up to the recording's.
    """

    label: str
    start_s: float = Field(description="seconds into the upload")
    end_s: float
    duration_s: float
    windows: int = Field(description="how many windows the segment merges")
    first_window: int = Field(description="index of its first window")
    mean_confidence: float = Field(description="mean confidence of its windows")


class PredictResponse(BaseModel):
    """Every window's prediction, the runs of one label they make, and what most of them said.

    ``label`` is the majority label (``summary.majority_windows`` of ``summary.windows`` windows say
    it); ``confidence`` is the mean confidence of those windows and ``probabilities`` the mean over
    all windows (for an image, the one prediction).
    """

    model_id: str
    kind: str
    variant: str
    input: str = Field(description="recording, samples, clip or image")
    filename: str
    label: str
    confidence: float
    probabilities: Dict[str, float]
    windows: List[WindowPrediction]
    segments: List[Segment] = Field(description="the windows merged into runs of one label, in order")
    summary: Summary
    total_ms: float = Field(description="server time for the whole request after the upload arrived")


class ErrorResponse(BaseModel):
    detail: str


# ---------------------------------------------------------------------------- loaded models


class InputError(EdgeHarError):
    """An upload the server cannot use; ``status`` is the HTTP status of the one-line reply."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def bundle_kind(bundle: Bundle) -> str:
    """sensor, video or still-image (a video bundle in image-seq mode predicts from one frame)."""
    if bundle.kind == "sensor":
        return "sensor"
    mode = (bundle.data.get("video") or {}).get("mode", "video")
    return "still-image" if mode == "image-seq" else "video"


@dataclass
class LoadedModel:
    """One bundle variant loaded for the server; ``lock`` serialises its interpreters."""

    bundle: Bundle
    kind: str
    variant: str
    backend: str
    backend_version: str
    sensor_model: Optional[TFLiteModel] = None
    video_models: Any = None  # edge_har.core.video_models.VideoModels (OpenCV imported only for video)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reader: Optional[ReaderRecord] = None  # how training read its data (None: a bundle without a record)
    recording_rate_hz: Optional[float] = None  # the rate training's files were made at (None: the model's)
    timed: bool = False  # training resampled its files by a timestamp column

    def __post_init__(self) -> None:
        if self.kind == "sensor":
            self.reader = bundle_reader(self.bundle)
            self.timed = resampled_by_timestamps(self.bundle, self.reader)
            self.recording_rate_hz = recording_rate(self.bundle, self.reader, self.timed)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    @classmethod
    def load(cls, path: Path, variant: str, options: Optional[InterpreterOptions] = None) -> LoadedModel:
        """Load ``variant`` of the bundle at ``path`` (its default variant when it has no such one)."""
        options = options or InterpreterOptions()
        bundle = Bundle.load(path)
        name = variant if variant in bundle.variants else bundle.default_variant
        if name != variant:
            log.warning("%s has no variant %r; serving its default, %r", bundle.root, variant, name)
        kind = bundle_kind(bundle)
        if kind == "sensor":
            model = bundle.load_model(name, options=options)
            pre = bundle.preprocessing
            bundle.check_model(model, name, expect_input=(1, pre.window, pre.n_channels))
            loaded = cls(bundle, kind, name, model.backend.name, model.backend.version, sensor_model=model)
        else:
            from edge_har.core.video_models import VideoModels

            models = VideoModels.load(bundle, name, options=options)
            first = models.whole or models.encoder or models.head  # a pose bundle's encoder is BlazePose
            assert first is not None
            loaded = cls(bundle, kind, name, first.backend.name, first.backend.version, video_models=models)
        log.info("serving %s (%s, variant %s, %s)", bundle.model_id, kind, name, loaded.backend)
        return loaded

    def info(self) -> BundleInfo:
        data = self.bundle.data
        return BundleInfo(
            model_id=self.model_id,
            kind=self.kind,
            labels=list(self.bundle.labels),
            input=TensorInfo(**{k: data["input"].get(k) for k in ("shape", "dtype", "layout")}),
            preprocessing=dict(data["preprocessing"]),
            variant=self.variant,
            variants=list(self.bundle.variants),
            quantization=self.bundle.variant(self.variant).quantization,
            interpreter=InterpreterInfo(backend=self.backend, version=self.backend_version),
            accepts=list(KIND_ACCEPTS[self.kind]),
            window_seconds=self.bundle.preprocessing.window_seconds,
            recording_rate_hz=self.recording_rate_hz or self.bundle.preprocessing.sample_rate_hz,
            recording_columns=recorded_column_choice(self.reader),
        )

    # ------------------------------------------------------------------ the predictions

    def predict_samples(
        self, samples: np.ndarray, source_rate_hz: Optional[float], what: str = "samples", rate_from: str = ""
    ) -> list[WindowPrediction]:
        """Raw samples -> every window, through the device's Windowing and interpreter call.

        ``what`` (the file name) starts every error message; ``rate_from`` says where a rate that
        the request did not give comes from (the bundle's reader record), for the rate's bound.
        """
        rate = self.check_samples(samples, source_rate_hz, what, rate_from)
        with self.lock:
            runtime = self._runtime()
            try:
                predictions = runtime.run_samples(samples, source_rate_hz=rate)
            except PreprocessingError as exc:
                raise InputError(f"{what}: {exc}") from exc
        out = []
        for i, p in enumerate(predictions):
            start, end = self.window_span(i)
            out.append(
                WindowPrediction(
                    index=i,
                    start_s=start,
                    end_s=end,
                    label=p.raw_label,
                    confidence=p.raw_confidence,
                    probabilities=p.probabilities,
                    latency_ms=p.inference_ms,
                )
            )
        return out

    def _runtime(self) -> Runtime:
        """The device's runtime over this sensor model, unsmoothed: every window's own prediction."""
        assert self.sensor_model is not None
        return Runtime(self.bundle, self.variant, self.sensor_model, Smoother(self.bundle.labels, window=1))

    def window_span(self, index: int) -> tuple[float, float]:
        """Window ``index``'s start and end, seconds from the start of the samples (as the Predict API says them)."""
        pre = self.bundle.preprocessing
        start = index * pre.stride / pre.sample_rate_hz
        return round(start, 6), round(start + pre.window_seconds, 6)

    def model_windows(
        self,
        samples: np.ndarray,
        source_rate_hz: Optional[float],
        what: str = "samples",
        rate_from: str = "",
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> list[Window]:
        """The normalised windows :meth:`predict_samples` feeds the interpreter, after the same checks.

        The device's :meth:`Runtime.windows` cuts them, so an explanation describes exactly the
        input a prediction came from. ``scale`` and ``offset`` replace the bundle's value scaling
        (a stored recording's own, from its recording.json).
        """
        rate = self.check_samples(samples, source_rate_hz, what, rate_from)
        with self.lock:
            try:
                return self._runtime().windows(samples, source_rate_hz=rate, scale=scale, offset=offset)
            except PreprocessingError as exc:
                raise InputError(f"{what}: {exc}") from exc

    def check_samples(
        self, samples: np.ndarray, source_rate_hz: Optional[float], what: str = "samples", rate_from: str = ""
    ) -> float:
        """The rate ``samples`` are taken at, once their columns, values, rate and window count pass
        the bounds a request is held to (an :class:`InputError` naming what fails)."""
        pre = self.bundle.preprocessing
        rate = source_rate_hz or pre.sample_rate_hz
        if samples.ndim != 2 or samples.shape[1] != pre.n_channels:
            got = samples.shape[1] if samples.ndim == 2 else samples.ndim
            raise InputError(
                f"{what}: {got} columns per sample, but the bundle's channels are {', '.join(pre.channels)} ({pre.n_channels})"
            )
        if not np.isfinite(samples).all():
            raise InputError(f"{what}: a value is not a finite number within float32's range (about ±3.4e38)")
        lowest = pre.sample_rate_hz / MAX_UPSAMPLE
        if not lowest <= rate <= MAX_RATE_HZ:
            raise InputError(
                f"{what}: sample_rate_hz {rate:g}{rate_from} is outside {lowest:g}..{MAX_RATE_HZ:g} Hz (the model's "
                f"{pre.sample_rate_hz:g} Hz / {MAX_UPSAMPLE}: a recording is resampled up at most {MAX_UPSAMPLE} times)"
            )
        needed = math.ceil(pre.window * rate / pre.sample_rate_hz)
        if len(samples) < needed:
            raise InputError(
                f"{what}: {len(samples)} samples at {rate:g} Hz ({len(samples) / rate:.2f} s) are too short for one "
                f"window of {pre.window} samples at {pre.sample_rate_hz:g} Hz ({pre.window_seconds:g} s)"
            )
        windows = expected_windows(len(samples), rate, pre.sample_rate_hz, pre.window, pre.stride)
        if windows > MAX_WINDOWS:
            raise InputError(
                f"{what}: {len(samples)} samples at {rate:g} Hz make {windows} windows, more than the {MAX_WINDOWS} "
                "one request predicts; send a shorter recording",
                413,
            )
        return rate

    def predict_frames(self, frames: Iterable[np.ndarray], fps: float) -> list[WindowPrediction]:
        """Decoded BGR frames at ``fps`` -> every window (video) or the one prediction (still image)."""
        from edge_har.core.frames import FrameError
        from edge_har.device.video_runtime import VideoRuntime

        models = self.video_models
        spec = models.spec
        out: list[WindowPrediction] = []
        with self.lock:
            runtime = VideoRuntime(models, smoother=Smoother(self.bundle.labels, window=1))
            for i, frame in enumerate(frames):
                try:
                    p = runtime.push(frame, i / fps)
                except FrameError as exc:
                    raise InputError(f"frame {i}: {exc}") from exc
                if p is None:
                    continue
                end = (runtime.windowing.frames_kept) / spec.fps
                out.append(
                    WindowPrediction(
                        index=len(out),
                        start_s=round(max(0.0, end - spec.window_seconds), 6),
                        end_s=round(end, 6),
                        label=p.raw_label,
                        confidence=p.raw_confidence,
                        probabilities=p.probabilities,
                        latency_ms=p.inference_ms,
                    )
                )
        return out


# ---------------------------------------------------------------------------- reading uploads


def expected_windows(n_samples: int, rate_hz: float, model_rate_hz: float, window: int, stride: int) -> int:
    """Windows ``n_samples`` at ``rate_hz`` make at the model's rate (as :func:`~edge_har.core.preprocessing.resample`)."""
    if n_samples == 0:
        return 0
    if rate_hz == model_rate_hz:
        n_model = n_samples
    else:
        n_model = int(math.floor((n_samples - 1) * model_rate_hz / rate_hz + 1e-9)) + 1
    return window_count(n_model, window, stride)


def check_rate(value: Any, where: str) -> float:
    """A sample rate in Hz from a form field's text or a JSON number: finite, > 0, at most MAX_RATE_HZ.

    The lower bound relative to the model's rate is checked with the model, in
    :meth:`LoadedModel.predict_samples`.
    """
    shown = repr(value)[:40]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}sample_rate_hz must be a number of Hz, got {shown}")
    try:
        rate = float(value.strip()) if isinstance(value, str) else float(value)
    except (ValueError, OverflowError):
        rate = float("nan")
    if not (math.isfinite(rate) and 0 < rate <= MAX_RATE_HZ):
        raise InputError(
            f"{where}sample_rate_hz must be a number of Hz above 0 and at most {MAX_RATE_HZ:g}, got {shown}"
        )
    return rate


def bundle_reader(bundle: Bundle) -> Optional[ReaderRecord]:
    """bundle.json's ``provenance.dataset.reader`` (the format and options training read its data
    with), or None for a bundle without one or with one that is not a reader record."""
    record = ((bundle.data.get("provenance") or {}).get("dataset") or {}).get("reader")
    if not isinstance(record, dict):
        return None
    try:
        reader = ReaderRecord.model_validate(record)
    except ValueError:
        log.warning("%s: provenance.dataset.reader is not a reader record; uploads are read without it", bundle.root)
        return None
    return reader


def resampled_by_timestamps(bundle: Bundle, reader: Optional[ReaderRecord]) -> bool:
    """Whether training put its files on a regular rate by a timestamp column (the reader's
    ``timestamp_column`` option, or the data set's ``resampling`` report)."""
    dataset = (bundle.data.get("provenance") or {}).get("dataset") or {}
    return reader is not None and (bool(reader.options.get("timestamp_column")) or "resampling" in dataset)


def recording_rate(bundle: Bundle, reader: Optional[ReaderRecord], timed: bool = False) -> Optional[float]:
    """The rate training's files were made at: the reader's ``sample_rate`` option, else the data
    set's ``sample_rate_hz`` (a format whose files fix it; first for ``timed`` files, whose data set
    rate is the one they were resampled to); None without a reader record or a usable number (the
    model's rate is then assumed, as for a bundle without a record)."""
    if reader is None:
        return None
    dataset = (bundle.data.get("provenance") or {}).get("dataset") or {}
    candidates = [reader.options.get("sample_rate"), dataset.get("sample_rate_hz")]
    for value in reversed(candidates) if timed else candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
    return None


def recorded_column_choice(reader: Optional[ReaderRecord]) -> Optional[List[str]]:
    """The reader record's ``columns`` option as text (None when training read every column)."""
    columns = reader.options.get("columns") if reader is not None else None
    if not isinstance(columns, (list, tuple)) or not columns:
        return None
    return [str(c) for c in columns]


def read_recording(
    path: Path, filename: str, n_channels: int, reader: Optional[ReaderRecord] = None, timed: bool = False
) -> np.ndarray:
    """A recording file through the project's reader (the one training and the replay source use),
    with the columns and the bad-line handling of the bundle's reader record ``reader``.

    A file whose columns the record's choice cannot be applied to (an index past its last column,
    a name it does not have) is taken as it is when it has exactly the model's ``n_channels``
    columns: a file of the chosen channels alone, as a device logs them. With ``timed`` (training
    resampled its files by a timestamp column, whose removal shifts the indices the choice names)
    only such a file is taken.
    """
    options: Dict[str, Any] = dict(reader.options) if reader is not None else {}
    try:
        result = read_samples_result(path, skip_bad=options.get("skip_bad") is True)
    except RecordingError as exc:
        raise InputError(str(exc).replace(str(path), filename)) from exc
    samples = result.samples
    choice = recorded_column_choice(reader)
    if timed and samples.shape[1] != n_channels:
        assert reader is not None
        raise InputError(
            f"{filename}: {samples.shape[1]} columns; the bundle's training files ({reader.format}) were resampled "
            f"by a timestamp column, which this upload does not do: send just the {n_channels} channels at a "
            "regular rate (sample_rate_hz)"
        )
    if choice is not None and not timed:
        assert reader is not None
        try:
            samples = recorded_columns(samples, result.header, options, filename)
        except (DatasetError, TypeError, ValueError) as exc:
            if samples.shape[1] != n_channels:
                why = str(exc).removeprefix(f"{filename}: ")
                raise InputError(
                    f"{filename}: {samples.shape[1]} columns; the bundle's reader ({reader.format}) picks columns "
                    f"{','.join(choice)} as training did ({why}), or send just the {n_channels} channels"
                ) from exc
    if samples.shape[1] != n_channels:
        picked = f" (columns {','.join(choice)} of {result.samples.shape[1]})" if choice is not None else ""
        raise InputError(
            f"{filename}: {samples.shape[1]} columns{picked}, but the bundle takes {n_channels} channels per sample"
        )
    return samples


def read_json_samples(raw: bytes, filename: str) -> tuple[np.ndarray, Optional[float]]:
    """``[[x, y, z], ...]`` or ``{"samples": [[...]], "sample_rate_hz": 50}`` -> (samples, rate).

    Each sample must be a flat array of JSON numbers (no strings, booleans or nulls that NumPy would
    quietly convert); JSON nested deeper than the decoder's recursion limit is refused, not a crash.
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise InputError(
            f"{filename}: JSON nested far deeper than samples are (an array of arrays of numbers)"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{filename}: not valid JSON ({str(exc)[:120]})") from exc
    rate = None
    if isinstance(doc, dict):
        if "samples" not in doc:
            raise InputError(f"{filename}: a JSON object needs a 'samples' key (an array of samples)")
        if doc.get("sample_rate_hz") is not None:
            if not _is_json_number(doc["sample_rate_hz"]):
                shown = json.dumps(doc["sample_rate_hz"])[:40]
                raise InputError(f"{filename}: sample_rate_hz must be a JSON number of Hz, got {shown}")
            rate = check_rate(doc["sample_rate_hz"], f"{filename}: ")
        doc = doc["samples"]
    if not isinstance(doc, list) or not doc:
        raise InputError(f"{filename}: expected a non-empty JSON array of samples (each an array of numbers)")
    if not all(isinstance(row, list) and all(_is_json_number(v) for v in row) for row in doc):
        raise InputError(f"{filename}: every sample must be an array of numbers, e.g. [[0.1, 0.2, 9.8], ...]")
    widths = {len(row) for row in doc}
    if len(widths) != 1:
        lengths = sorted(widths)
        listed = ", ".join(map(str, lengths[:8])) + (", ..." if len(lengths) > 8 else "")
        raise InputError(f"{filename}: samples have different lengths ({listed})")
    try:
        with np.errstate(over="ignore"):
            arr = np.asarray(doc, dtype=np.float32).reshape(len(doc), -1)
    except OverflowError:  # an integer beyond float64
        arr = np.full((len(doc), 1), np.inf, np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{filename}: samples must be finite numbers within float32's range (about ±3.4e38)")
    return arr, rate


def _is_json_number(value: Any) -> bool:
    return type(value) in (int, float)


def read_image(raw: bytes, filename: str) -> np.ndarray:
    """The image decoded as the camera's frames are, after its header's size is checked (nothing decoded yet)."""
    import cv2

    size = declared_size(raw)
    if size is not None:
        _check_frame_size(*size, filename, "an image")
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    if image is None:
        raise InputError(f"{filename}: not an image OpenCV can read (damaged, or not PNG/JPEG/BMP/WebP/TIFF)")
    return image


class Clip:
    """A video file's frames, decoded one at a time as they are consumed (never all held at once).

    A 20 MB upload of a well-compressed clip can decode to gigabytes of frames; the camera runtime
    only ever needs the current one. ``frames`` counts what was decoded; more than
    :data:`MAX_CLIP_FRAMES` is refused (this is for short clips).
    """

    def __init__(self, path: Path, filename: str, fallback_fps: float) -> None:
        import cv2

        self.filename = filename
        self.frames = 0
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"{filename}: not a video OpenCV can read (damaged, or an unsupported codec)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else fallback_fps
        width = self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0.0
        height = self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0.0
        try:
            _check_frame_size(int(width), int(height), filename, "a frame")
        except InputError:
            self._cap.release()
            raise

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = self._cap.read()
                if not ok:
                    break
                self.frames += 1
                if self.frames > MAX_CLIP_FRAMES:
                    raise InputError(
                        f"{self.filename}: more than {MAX_CLIP_FRAMES} frames; send a shorter clip", status=413
                    )
                yield frame
        finally:
            self._cap.release()
        if not self.frames:
            raise InputError(f"{self.filename}: no frame could be decoded")


def _check_frame_size(width: int, height: int, filename: str, what: str) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise InputError(
            f"{filename}: {what} of {width}x{height} pixels is over the {MAX_FRAME_PIXELS / 1e6:.1f} MP limit; "
            "send a smaller one",
            413,
        )


def _suffix(filename: str) -> str:
    return Path(filename).suffix.lower()


def segments(windows: list[WindowPrediction]) -> list[Segment]:
    """Consecutive windows with the same label merged, in order (see :class:`Segment` for the edges)."""
    out: list[Segment] = []
    runs: list[list[WindowPrediction]] = []
    for w in windows:
        if runs and runs[-1][-1].label == w.label:
            runs[-1].append(w)
        else:
            runs.append([w])
    start = windows[0].start_s if windows else 0.0
    for i, run in enumerate(runs):
        if i + 1 < len(runs):
            last, first = run[-1], runs[i + 1][0]
            end = round((last.start_s + last.end_s + first.start_s + first.end_s) / 4, 6)
            end = min(max(end, start), first.end_s)  # windows out of order never make a negative length
        else:
            end = max(run[-1].end_s, start)
        out.append(
            Segment(
                label=run[0].label,
                start_s=start,
                end_s=end,
                duration_s=round(end - start, 6),
                windows=len(run),
                first_window=run[0].index,
                mean_confidence=float(np.mean([w.confidence for w in run])),
            )
        )
        start = end
    return out


def _summary(windows: list[WindowPrediction], labels: list[str]) -> tuple[Summary, Dict[str, float], float]:
    counts = Counter(w.label for w in windows)
    majority, n = max(counts.items(), key=lambda kv: (kv[1], -labels.index(kv[0]) if kv[0] in labels else 0))
    lat = [w.latency_ms for w in windows]
    summary = Summary(
        windows=len(windows),
        majority_label=majority,
        majority_windows=n,
        majority_share=n / len(windows),
        shares={label: counts.get(label, 0) / len(windows) for label in labels},
        mean_latency_ms=float(np.mean(lat)),
        p50_latency_ms=float(np.median(lat)),
    )
    probabilities = {label: float(np.mean([w.probabilities.get(label, 0.0) for w in windows])) for label in labels}
    confidence = float(np.mean([w.confidence for w in windows if w.label == majority]))
    return summary, probabilities, confidence


def upload_body(extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``openapi_extra`` of a route taking the Predict API's upload (file, model_id, sample_rate_hz),
    with ``extra`` form fields (name -> JSON schema) besides, so every such route states the same bounds."""
    properties: Dict[str, Any] = {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "the upload; its file name's ending says what it is "
            "(GET /api/info lists what each bundle accepts)",
        },
        "model_id": {
            "type": "string",
            "maxLength": MAX_MODEL_ID_CHARS,
            "description": "which loaded bundle (default: the first)",
        },
        "sample_rate_hz": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_RATE_HZ,
            "description": "rate of an uploaded recording in Hz (default: for a "
            "recording, the rate training's files were made at, from bundle.json's "
            "reader record (GET /api/info's recording_rate_hz); for JSON, its "
            "sample_rate_hz, else the model's); at least the model's rate / "
            f"{MAX_UPSAMPLE} (a recording is resampled up at most {MAX_UPSAMPLE} times)",
        },
        **(extra or {}),
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": properties},
                    "encoding": {
                        "file": {
                            "headers": {
                                "Content-Disposition": {
                                    "schema": {"type": "string"},
                                    "example": 'form-data; name="file"; filename="walk.csv"',
                                }
                            }
                        }
                    },
                }
            },
        }
    }


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------- the service


class PredictService:
    """The loaded bundles and the router serving the Predict page and its API."""

    def __init__(self, cfg: ServeConfig, models: Optional[list[LoadedModel]] = None) -> None:
        self.cfg = cfg
        self.models = models if models is not None else [LoadedModel.load(Path(p), cfg.variant) for p in cfg.bundles]
        self.by_id: dict[str, LoadedModel] = {}
        for m in self.models:
            if m.model_id in self.by_id:
                raise BundleError(
                    f"{m.bundle.root}: model id {m.model_id} is already served from {self.by_id[m.model_id].bundle.root}"
                    " (the Predict page and model_id tell bundles apart by it); give each --bundle once"
                )
            self.by_id[m.model_id] = m
        self.router = APIRouter()
        self.router.add_api_route("/", self.page, methods=["GET"], include_in_schema=False)
        self.router.add_api_route(
            "/api/info",
            self.info,
            methods=["GET"],
            response_model=InfoResponse,
            summary="The loaded bundles: model id, kind, labels, input, preprocessing, variant, interpreter",
            tags=["predict"],
        )
        self.router.add_api_route(
            "/api/predict",
            self.predict,
            methods=["POST"],
            response_model=PredictResponse,
            summary="Predict from an uploaded recording, JSON samples, clip or image",
            description=(
                "The work and the reply follow the upload: one request predicts at most "
                f"{MAX_WINDOWS} windows (counted from the samples and the rate before any work; more is a 413), "
                f"a recording's rate is at least the model's rate / {MAX_UPSAMPLE}, a clip has at most "
                f"{MAX_CLIP_FRAMES} frames, an image or a frame at most {MAX_FRAME_PIXELS} pixels, and text fields "
                f"are at most {MAX_FIELD_BYTES} bytes."
            ),
            tags=["predict"],
            responses={
                400: {"model": ErrorResponse, "description": "no file, an unknown model_id, or a malformed form"},
                413: {
                    "model": ErrorResponse,
                    "description": f"over the upload size limit, more than {MAX_WINDOWS} windows, a clip of "
                    f"more than {MAX_CLIP_FRAMES} frames, or an image or frame over {MAX_FRAME_PIXELS} pixels",
                },
                415: {"model": ErrorResponse, "description": "a kind of file this bundle does not take"},
                422: {"model": ErrorResponse, "description": "unreadable, wrong columns, or too short for a window"},
            },
            openapi_extra=upload_body(),
        )

    async def page(self) -> FileResponse:
        return FileResponse(STATIC / "predict.html", media_type="text/html")

    async def info(self) -> InfoResponse:
        return InfoResponse(
            bundles=[m.info() for m in self.models],
            max_upload_bytes=self.cfg.max_upload_bytes,
            max_windows=MAX_WINDOWS,
            max_upsample=MAX_UPSAMPLE,
            auth=self.cfg.password is not None,
        )

    def _limited(self, request: Request) -> Request:
        """The request with its body counted as it streams in: over the limit, reading it fails."""
        limit = self.cfg.max_upload_bytes + MULTIPART_SLACK
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _TooLarge()
        receive = request.receive
        seen = 0

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge()
            return message

        return Request(request.scope, counting_receive)

    def _too_large(self) -> HTTPException:
        mb = self.cfg.max_upload_bytes / (1024 * 1024)
        return HTTPException(413, f"the upload is over the {mb:g} MiB limit (edge-har serve --max-upload-mb)")

    async def read_form(self, request: Request, fields: str = "model_id, sample_rate_hz") -> FormData:
        """The multipart form of an upload, read within the size limits (``fields`` names the text
        fields in the refusal of one over :data:`MAX_FIELD_BYTES`); the caller closes it."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send the file as multipart/form-data in a field named 'file'")
        try:
            return await self._limited(request).form(max_files=1, max_fields=10, max_part_size=MAX_FIELD_BYTES)
        except _TooLarge:
            raise self._too_large() from None
        except StarletteHTTPException as exc:  # the multipart parser's own refusals (a 400)
            why = str(exc.detail)[:200]
            if "exceeded maximum size" in why:
                why = f"a text field ({fields}) is over {MAX_FIELD_BYTES} bytes"
            raise HTTPException(exc.status_code, f"multipart form: {why}") from None
        except ClientDisconnect:  # the client left (or the body timed out): nobody reads a reply
            raise HTTPException(400, "the client went away before the upload ended") from None

    def upload_fields(self, form: FormData) -> tuple[UploadFile, LoadedModel, Optional[float], str]:
        """The form's file, model, rate and file name, each checked (a one-line 4xx naming the field)."""
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "no file: send it in a multipart field named 'file'")
        model = self._model(form.get("model_id"))
        rate = self._rate(form.get("sample_rate_hz"))
        filename = Path(upload.filename or "upload").name
        if len(filename) > MAX_FILENAME_CHARS:
            raise HTTPException(400, f"file name: longer than {MAX_FILENAME_CHARS} characters ({filename[:40]!r}...)")
        if (upload.size or 0) > self.cfg.max_upload_bytes:
            raise self._too_large()
        return upload, model, rate, filename

    async def predict(self, request: Request) -> PredictResponse:
        form = await self.read_form(request)
        try:
            upload, model, rate, filename = self.upload_fields(form)
            started = time.perf_counter()
            try:
                input_kind, windows = await run_in_threadpool(self._run, model, upload, filename, rate)
            except InputError as exc:
                raise HTTPException(exc.status, str(exc).splitlines()[0]) from None
            if not windows:
                raise HTTPException(422, f"{filename}: too short for one window of the model")
            summary, probabilities, confidence = _summary(windows, list(model.bundle.labels))
            return PredictResponse(
                model_id=model.model_id,
                kind=model.kind,
                variant=model.variant,
                input=input_kind,
                filename=filename,
                label=summary.majority_label,
                confidence=confidence,
                probabilities=probabilities,
                windows=windows,
                segments=segments(windows),
                summary=summary,
                total_ms=(time.perf_counter() - started) * 1000.0,
            )
        finally:
            await form.close()

    def _model(self, model_id: Any) -> LoadedModel:
        if not self.models:
            raise HTTPException(400, "no bundle is loaded (edge-har serve --bundle DIR)")
        if model_id in (None, ""):
            return self.models[0]
        if not isinstance(model_id, str) or len(model_id) > MAX_MODEL_ID_CHARS:
            raise HTTPException(
                400, f"model_id: at most {MAX_MODEL_ID_CHARS} characters of text, got {str(model_id)[:40]!r}..."
            )
        if model_id not in self.by_id:
            raise HTTPException(400, f"model_id {model_id[:60]!r} is not loaded; loaded: {', '.join(self.by_id)}")
        return self.by_id[model_id]

    @staticmethod
    def _rate(text: Any) -> Optional[float]:
        if text in (None, ""):
            return None
        if not isinstance(text, str):
            raise HTTPException(422, "sample_rate_hz: a form field of text, not a file")
        try:
            return check_rate(text, "")
        except InputError as exc:
            raise HTTPException(exc.status, str(exc)) from None

    def _run(
        self, model: LoadedModel, upload: UploadFile, filename: str, rate: Optional[float]
    ) -> tuple[str, list[WindowPrediction]]:
        """In the thread pool: read the upload the way its kind needs, then predict."""
        try:
            if model.kind == "sensor":  # read_sensor_upload checks the file name's ending itself
                input_kind, samples, rate, rate_from = read_sensor_upload(model, upload, filename, rate)
                return input_kind, model.predict_samples(samples, rate, filename, rate_from)
            suffix = check_suffix(model, upload, filename)
            upload.file.seek(0)
            if model.kind == "still-image":
                return "image", model.predict_frames([read_image(upload.file.read(), filename)], fps=1.0)
            with _as_file(upload, suffix) as path:
                clip = Clip(path, filename, model.video_models.spec.fps)
                windows = model.predict_frames(clip, clip.fps)
            if not windows:
                spec = model.video_models.spec
                raise InputError(
                    f"{filename}: {clip.frames} frames at {clip.fps:g} fps are too short for one window of "
                    f"{spec.window} frames at {spec.fps:g} fps ({spec.window_seconds:g} s)"
                )
            return "clip", windows
        except (BundleError, PreprocessingError) as exc:
            raise InputError(f"{filename}: {exc}") from exc


def check_suffix(model: LoadedModel, upload: UploadFile, filename: str) -> str:
    """The upload's file name ending, once it is one ``model``'s kind takes (else a 415 :class:`InputError`)."""
    suffix = _suffix(filename)
    if suffix not in KIND_ACCEPTS[model.kind]:
        content_type = (upload.content_type or "").split(";")[0].strip().lower()
        raise InputError(
            f"{filename} ({content_type or 'no content type'}): {model.model_id} is a {model.kind} bundle and "
            f"takes {KIND_DESCRIBES[model.kind]}",
            415,
        )
    return suffix


def read_sensor_upload(
    model: LoadedModel, upload: UploadFile, filename: str, rate: Optional[float]
) -> tuple[str, np.ndarray, Optional[float], str]:
    """A sensor bundle's upload read as its ending says: ``(input kind, samples, rate, where the rate is from)``.

    The rate is the request's, else a JSON upload's own, else (a recording) the rate of the
    bundle's training files; the last comes with the words that say so in a refusal of it.
    """
    suffix = check_suffix(model, upload, filename)
    upload.file.seek(0)
    if suffix in JSON_SUFFIXES:
        samples, json_rate = read_json_samples(upload.file.read(), filename)
        return "samples", samples, rate or json_rate, ""
    with _as_file(upload, suffix) as path:
        n_channels = model.bundle.preprocessing.n_channels
        samples = read_recording(path, filename, n_channels, model.reader, model.timed)
    if rate is None and model.recording_rate_hz is not None:
        rate_from = " (the rate of the bundle's training files; send sample_rate_hz to override)"
        return "recording", samples, model.recording_rate_hz, rate_from
    return "recording", samples, rate, ""


class _as_file:
    """The upload as a named file on disk (the recording reader and OpenCV's decoder take paths)."""

    def __init__(self, upload: UploadFile, suffix: str) -> None:
        self.upload = upload
        self.suffix = suffix
        self.path: Optional[Path] = None

    def __enter__(self) -> Path:
        fd, name = tempfile.mkstemp(prefix="edge-har-upload-", suffix=self.suffix)
        self.path = Path(name)
        with os.fdopen(fd, "wb") as out:
            self.upload.file.seek(0)
            while chunk := self.upload.file.read(1 << 20):
                out.write(chunk)
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
