"""Why a window got its label: ``POST /api/explain`` (an upload) and ``GET /api/recordings/.../explain``.

Both answer with one window's occlusion attribution (:func:`edge_har.core.attribution.occlusion`):
patches of each channel's time segments are hidden in turn (set to the channel's training mean) and
the drop in the explained class's probability is the hidden cells' share of the decision. The window is the very input a
prediction came from: the device's :meth:`~edge_har.device.runtime.Runtime.windows` cuts and
normalises it (through :meth:`~edge_har.web.predict.LoadedModel.model_windows`) and the model is
the loaded TFLite variant the Predict page runs, under the same per-model lock. The samples come
back in physical units (the bundle's normalisation undone) so a page can draw the signal with the
attribution under it.

``POST /api/explain`` takes the Predict API's upload, read and bounded by the Predict API's own
functions, plus ``window`` (an index) and ``target`` (a label); the recordings route takes a stored
session and a time ``at``, and explains the window of the model's stride grid centred nearest to it.
Only sensor bundles are explained (a video or image bundle is a 422 saying so). The cost is one
model call per hidden patch plus one (:func:`~edge_har.core.attribution.occlusion_calls`); every
reply states the calls and the time.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Dict, Optional, Sequence

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from edge_har.core.attribution import occlusion
from edge_har.core.bundle import BundleError
from edge_har.core.preprocessing import PreprocessingError, denormalise
from edge_har.core.recording_layout import read_meta
from edge_har.device.runtime_api import Window
from edge_har.web import api_models as m
from edge_har.web.predict import (
    MAX_WINDOWS,
    ErrorResponse,
    InputError,
    LoadedModel,
    PredictService,
    expected_windows,
    read_sensor_upload,
    upload_body,
)
from edge_har.web.recording_store import RecordingStore
from edge_har.web.recordings import _DEVICE, _ERRORS, _SESSION, _UNREADABLE, TIME_MAX, _guard

__all__ = ["explain_router", "explain_window"]

log = logging.getLogger(__name__)

MAX_TARGET_CHARS = 64  # a label, as the recording layout bounds one
_WHOLE = re.compile(r"^[0-9]{1,9}$")
_SENSOR_ONLY = "explanations are for sensor bundles"


def target_index(model: LoadedModel, target: Optional[str]) -> Optional[int]:
    """The class index of the label ``target`` (None: explain the predicted class)."""
    if target in (None, ""):
        return None
    labels = list(model.bundle.labels)
    if target not in labels:
        shown = str(target)[:MAX_TARGET_CHARS]
        raise InputError(f"target: {shown!r} is not a label of {model.model_id} ({', '.join(labels)})")
    return labels.index(str(target))


def sensor_only(model: LoadedModel) -> None:
    """Refuse a video or image bundle: its windows are frames through an encoder, which occlusion of
    (time, channel) cells does not describe."""
    if model.kind != "sensor":
        raise InputError(f"model_id: {model.model_id} is a {model.kind} bundle; {_SENSOR_ONLY}")


def explain_window(
    model: LoadedModel,
    windows: Sequence[Window],
    index: int,
    target: Optional[int],
    source: str,
    start_ts: Optional[float] = None,
) -> m.ExplainResponse:
    """Window ``index`` of ``windows`` (normalised, from :meth:`LoadedModel.model_windows`) explained.

    The prediction and the attribution run under the model's lock: a TFLite interpreter is not
    thread-safe, and the Predict API shares it.
    """
    if not 0 <= index < len(windows):
        raise InputError(
            f"window: {index} is out of range; {source} makes {len(windows)} windows (0..{len(windows) - 1})"
        )
    pre = model.bundle.preprocessing
    labels = list(model.bundle.labels)
    data = windows[index].data
    assert model.sensor_model is not None
    with model.lock:
        probabilities = np.asarray(model.sensor_model.predict(data), dtype=np.float32).reshape(-1)
        attribution = occlusion(model.sensor_model.predict, data, target=target)
    predicted = int(probabilities.argmax())
    start_s, end_s = model.window_span(index)
    log.info(
        "explained window %d of %s (%s): %d model calls in %.1f ms",
        index,
        source,
        labels[attribution.target],
        attribution.calls,
        1000 * attribution.seconds,
    )
    samples = denormalise(data, pre)
    return m.ExplainResponse(
        model_id=model.model_id,
        variant=model.variant,
        source=source,
        index=index,
        windows=len(windows),
        start_s=start_s,
        end_s=end_s,
        start_ts=start_ts,
        label=labels[predicted],
        confidence=float(probabilities[predicted]),
        probabilities={label: float(p) for label, p in zip(labels, probabilities)},
        explained=labels[attribution.target],
        explained_probability=float(attribution.probability),
        channels=list(pre.channels),
        units=pre.units,
        sample_rate_hz=pre.sample_rate_hz,
        samples=[[round(float(v), 6) for v in samples[:, c]] for c in range(samples.shape[1])],
        attribution=m.OcclusionAttribution(**attribution.to_json()),
        ms=round(1000 * attribution.seconds, 3),
        calls=attribution.calls,
    )


def _form_text(value: Any, name: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPException(422, f"{name}: a form field of text, not a file")
    return value


def window_field(value: Any) -> int:
    """The ``window`` form field: a whole number from 0 (default 0, the first window)."""
    text = _form_text(value, "window")
    if text in (None, ""):
        return 0
    assert text is not None
    if not _WHOLE.match(text.strip()):
        raise HTTPException(422, f"window: {text[:40]!r} is not a window index (a whole number from 0)")
    return int(text.strip())


def target_field(value: Any) -> Optional[str]:
    text = _form_text(value, "target")
    if text is not None and len(text) > MAX_TARGET_CHARS:
        raise HTTPException(422, f"target: longer than {MAX_TARGET_CHARS} characters ({text[:40]!r}...)")
    return text or None


# ---------------------------------------------------------------------------- the routes

_EXPLAIN_FIELDS: Dict[str, Any] = {
    "window": {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_WINDOWS - 1,
        "description": "index of the window to explain, as POST /api/predict numbers them (default 0)",
    },
    "target": {
        "type": "string",
        "maxLength": MAX_TARGET_CHARS,
        "description": "the label to explain (default: the label the model gives the window)",
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "no file, an unknown model_id, or a malformed form"},
    413: {"model": ErrorResponse, "description": "over the upload size limit or more windows than one request takes"},
    415: {"model": ErrorResponse, "description": "a kind of file this bundle does not take"},
    422: {
        "model": ErrorResponse,
        "description": "unreadable, wrong columns, too short, a window out of range, a target that is not a "
        "label, or a video/image bundle (explanations are for sensor bundles)",
    },
}


def explain_router(predict: PredictService, store: RecordingStore) -> APIRouter:
    """The two explain routes over ``predict``'s loaded models and the recordings ``store``."""
    router = APIRouter()

    async def api_explain(request: Request) -> m.ExplainResponse:
        form = await predict.read_form(request, "model_id, sample_rate_hz, window, target")
        try:
            upload, model, rate, filename = predict.upload_fields(form)
            index = window_field(form.get("window"))
            target = target_field(form.get("target"))
            try:
                return await run_in_threadpool(_explain_upload, model, upload, filename, rate, index, target)
            except InputError as exc:
                raise HTTPException(exc.status, str(exc).splitlines()[0]) from None
        finally:
            await form.close()

    router.add_api_route(
        "/api/explain",
        api_explain,
        methods=["POST"],
        response_model=m.ExplainResponse,
        summary="Why one window of an upload got its label: occlusion attribution per time segment and channel",
        description=(
            "The upload of POST /api/predict (same fields and bounds) plus `window` and `target`. Patches of the "
            "window's (time segment, channel) cells are set to the channel's training mean in turn and the drop "
            "in the explained class's probability is their attribution: positive supports the class, negative "
            "speaks against it. The model is the loaded TFLite variant; the cost is one model call per patch plus "
            "one (`calls`). Sensor bundles only."
        ),
        tags=["predict"],
        responses=_RESPONSES,
        openapi_extra=upload_body(_EXPLAIN_FIELDS),
    )

    @router.get(
        "/api/recordings/{device_id}/{session_id}/explain",
        tags=["recordings"],
        summary="Why the model window at a time of a stored recording got its label (occlusion attribution)",
        description=(
            "The window of the model's stride grid whose centre is nearest to `at` (default: the recording's "
            "middle), cut from the session's samples with recording.json's rate and value scaling, explained as "
            "POST /api/explain does. `start_ts` is the window's first sample's t."
        ),
        response_model=m.ExplainResponse,
        responses={
            **_ERRORS,
            422: {
                **_UNREADABLE,
                "description": "a parameter of the wrong type (FastAPI's list of errors), or one line: a session "
                "file the layout's reader refuses, a time outside the recording, a target that is not a label, "
                "channels the model does not take, too short for a window, or a video/image bundle",
            },
        },
    )
    def api_recording_explain(
        device_id: str = _DEVICE,
        session_id: str = _SESSION,
        at: Optional[float] = Query(
            None,
            description="Unix seconds: the window centred nearest to this time (default: the recording's middle)",
            json_schema_extra={"minimum": 0, "maximum": TIME_MAX},
        ),
        model_id: Optional[str] = Query(
            None,
            description="which loaded bundle (default: the one recording.json names when it is loaded, else the first)",
            json_schema_extra={"minLength": 1, "maxLength": 128},
        ),
        target: Optional[str] = Query(
            None,
            description="the label to explain (default: the label the model gives the window)",
            json_schema_extra={"minLength": 1, "maxLength": MAX_TARGET_CHARS},
        ),
    ) -> m.ExplainResponse:
        if at is not None and not (math.isfinite(at) and 0 <= at <= TIME_MAX):
            raise HTTPException(400, f"at: {at!r} is not a Unix time from 1970 to the end of 9999")
        if target is not None and len(target) > MAX_TARGET_CHARS:
            raise HTTPException(400, f"target: longer than {MAX_TARGET_CHARS} characters ({target[:40]!r}...)")
        path = _guard(lambda: store.existing(device_id, session_id))
        meta = _guard(lambda: read_meta(path))
        model = predict._model(model_id or (meta.model_id if meta.model_id in predict.by_id else None))
        t, x = _guard(lambda: store.arrays(path))
        try:
            return _explain_recording(model, meta, t, x, f"{device_id}/{session_id}", at, target)
        except InputError as exc:
            raise HTTPException(exc.status, str(exc).splitlines()[0]) from None

    return router


def _explain_upload(
    model: LoadedModel, upload: UploadFile, filename: str, rate: Optional[float], index: int, target: Optional[str]
) -> m.ExplainResponse:
    """In the thread pool: the upload read as POST /api/predict reads it, its windows cut, one explained."""
    sensor_only(model)
    chosen = target_index(model, target)
    try:
        _kind, samples, rate, rate_from = read_sensor_upload(model, upload, filename, rate)
        windows = model.model_windows(samples, rate, filename, rate_from)
    except (BundleError, PreprocessingError) as exc:
        raise InputError(f"{filename}: {exc}") from exc
    return explain_window(model, windows, index, chosen, filename)


def _explain_recording(
    model: LoadedModel,
    meta: Any,
    t: np.ndarray,
    x: np.ndarray,
    source: str,
    at: Optional[float],
    target: Optional[str],
) -> m.ExplainResponse:
    """The stride-grid window of a stored session centred nearest to ``at``, explained.

    Only the samples of that window (and a sample or two of margin for the resampler) are cut, so
    the work does not grow with the recording's length.
    """
    sensor_only(model)
    chosen = target_index(model, target)
    pre = model.bundle.preprocessing
    if len(meta.channels) != pre.n_channels:
        raise InputError(
            f"channels: {source} records {len(meta.channels)} ({', '.join(meta.channels)}) but {model.model_id} "
            f"takes {pre.n_channels} ({', '.join(pre.channels)})"
        )
    rate = float(meta.sample_rate_hz)
    total = expected_windows(len(t), rate, pre.sample_rate_hz, pre.window, pre.stride) if len(t) else 0
    if total < 1:
        raise InputError(
            f"{source}: {len(t)} samples at {rate:g} Hz are too short for one window of {pre.window_seconds:g} s"
        )
    first, last = float(t[0]), float(t[-1])
    centre = (first + last) / 2 if at is None else at
    if not first <= centre <= last + 1.0 / rate:
        raise InputError(f"at: {centre:.3f} is outside {source} ({first:.3f}..{last:.3f})")
    offset_s = centre - first - pre.window_seconds / 2
    index = min(max(round(offset_s / pre.stride_seconds), 0), total - 1)
    begin = int(round(index * pre.stride * rate / pre.sample_rate_hz))
    needed = math.ceil(pre.window * rate / pre.sample_rate_hz) + math.ceil(rate / pre.sample_rate_hz) + 1
    begin = max(0, min(begin, len(t) - needed))
    try:
        cut = model.model_windows(x[begin : begin + needed], rate, source, "", meta.scale, meta.offset)
    except (BundleError, PreprocessingError) as exc:
        raise InputError(f"{source}: {exc}") from exc
    if not cut:
        raise InputError(f"{source}: no window could be cut at {centre:.3f}")
    reply = explain_window(model, cut[:1], 0, chosen, source, start_ts=float(t[begin]))
    start_s = round(float(t[begin]) - first, 6)
    return reply.model_copy(
        update={"index": index, "windows": total, "start_s": start_s, "end_s": round(start_s + pre.window_seconds, 6)}
    )
