"""The response shapes of the Live half of ``edge-har serve``, as pydantic models for ``/openapi.json``.

Integrators generate clients from the schema and schemathesis checks every answer against it, so each
JSON route names its model here. ``/api/devices`` is written with ``json.dumps`` for speed (a 1,000-device
page), so its model only documents the shape (``responses=``); the tests validate real pages against it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """A shape that may gain fields: clients must ignore what they do not know."""

    model_config = ConfigDict(extra="allow")


class BrokerState(_Open):
    configured: bool
    address: Optional[str] = None
    connected: bool
    subscribed: bool = False
    last_problem: Optional[str] = None


class Activity(_Open):
    label: str
    confidence: float
    ts: float = Field(description="the prediction's window_end_ts (device clock, Unix seconds)")
    received_at: float = Field(description="when the server received it (Unix seconds)")
    probabilities: Dict[str, float]


class Current(_Open):
    label: str
    since: float = Field(description="ts of the first prediction of the newest unbroken stretch of this label")
    duration_s: float = Field(description="newest prediction's ts minus since")


class TimelinePoint(_Open):
    ts: float
    label: str
    confidence: Optional[float] = None
    run_id: str
    seq: int


class DaySeconds(_Open):
    day: str
    seconds: Dict[str, float]
    total_s: float


class EventItem(_Open):
    """One event a device published (a fall): what, when the impact was, when it was detected, how sure."""

    device_id: str
    event_type: str
    impact_ts: float = Field(description="the impact's time, Unix seconds of the device's clock")
    detected_ts: float = Field(description="the end of the window that completed the rule")
    confidence: float
    windows: int = Field(description="windows the rule's run spanned")
    first_seq: int
    last_seq: int
    model_id: str
    variant: Optional[str] = None
    run_id: str = Field(description="'' for a device older than the run id")
    received_at: float = Field(description="when serve received it (the server's clock)")


class EventsResponse(_Open):
    since: float
    until: float
    limit: int
    truncated: bool = Field(description="more events than limit matched (the newest are kept)")
    events: List[EventItem] = Field(description="newest first")


class DeviceView(_Open):
    device_id: str
    status: Optional[str] = None
    liveness: str = Field(description="online, stale, stopped, offline or unknown")
    status_at: Optional[float] = None
    last_seen: float
    run_id: Optional[str] = None
    model_id: Optional[str] = None
    stats: Optional[Dict[str, Any]] = None
    stats_at: Optional[float] = None
    gaps: int = Field(description="predictions lost upstream (seq gaps), 0 without a broker")
    rejected: int = Field(description="messages of the device the ingest refused since start")
    activity: Optional[Activity] = None
    current: Optional[Current] = None
    hour: Optional[List[TimelinePoint]] = Field(None, description="only with hour_step_s")
    today: Optional[DaySeconds] = Field(None, description="only with today=true")
    last_events: Optional[Dict[str, EventItem]] = Field(
        None, description="the device's newest event of each type it published (type -> event)"
    )
    hour_events: Optional[List[EventItem]] = Field(
        None, description="only with hour_step_s: the last hour's, oldest first"
    )


class DevicesPage(_Open):
    now: float
    broker: BrokerState
    total: int
    limit: int
    next: Optional[str] = None
    devices: List[DeviceView]
    ingest: Optional[Dict[str, Any]] = Field(None, description="the ingest's books, with a broker")


class StatusChange(_Open):
    status: str
    received_at: float


class Outage(_Open):
    start: float
    end: float
    reason: Literal["no_data", "stopped", "offline"]


class HistoryResponse(_Open):
    device_id: str
    since: float
    until: float
    limit: int
    step_s: Optional[float] = None
    truncated: bool = Field(description="more predictions than limit fell in the range (the newest are kept)")
    predictions: List[TimelinePoint]
    status: List[StatusChange]
    status_before: Optional[StatusChange] = Field(description="the last status change at or before since")
    outages: List[Outage]
    events: List[EventItem] = Field(description="the device's events (a fall) in the range, oldest first")


class SummaryDay(_Open):
    day: str = Field(description="YYYY-MM-DD at utc_offset_min")
    start: float
    end: float
    seconds: Dict[str, float]
    total_s: float


class SummaryResponse(_Open):
    device_id: str
    since: float
    until: float
    utc_offset_min: int
    days: Optional[List[SummaryDay]] = Field(None, description="absent with by=total")
    seconds: Dict[str, float]
    total_s: float
    day: Optional[str] = Field(None, description="the day asked for with day=")
    start: float = Field(description="same as since")
    end: float = Field(description="same as until")


class LabelsResponse(_Open):
    labels: List[str]


class StoreHealth(_Open):
    ok: bool
    backend: Literal["sqlite", "postgresql"]
    latency_ms: float = Field(description="how long the check took (the timeout when it gave up)")
    error: Optional[str] = None


class BrokerHealth(_Open):
    configured: bool
    connected: bool


class HealthResponse(_Open):
    status: Literal["ok", "unavailable"]
    store: StoreHealth
    broker: BrokerHealth


class IngestStatus(_Open):
    """``{"configured": false}`` without a broker; with one, the books ``Ingest.status()`` keeps."""

    configured: bool
    connected: Optional[bool] = None
    received: Optional[int] = None
    stored: Optional[int] = None
    duplicates: Optional[int] = None
    statuses: Optional[int] = None
    stats: Optional[int] = None
    rejected: Optional[Dict[str, int]] = Field(None, description="messages refused, by reason")
    gaps: Optional[int] = Field(None, description="predictions lost upstream (seq numbers that never arrived)")
    dropped_full: Optional[int] = None
    queued: Optional[int] = None
    unacked: Optional[int] = None
    db: Optional[Dict[str, Any]] = Field(None, description="the store's state for the ingest: state, outages")


# ---------------------------------------------------------------------------------------------- recordings


class RecordingItem(_Open):
    device_id: str
    session_id: str
    channels: List[str]
    sample_rate_hz: float = Field(description="the nominal rate recording.json states")
    started: float = Field(description="recording.json's start (Unix seconds)")
    start: Optional[float] = Field(description="the first sample's t; null before any part arrived")
    end: Optional[float] = Field(description="the last complete sample's t")
    samples: int
    labels: int = Field(description="segments in labels.csv")
    labelled_s: float = Field(description="seconds covered by segments (an open one runs to the last sample)")
    capture: Optional[Dict[str, Any]] = Field(description="recording.json's capture: a captured window's why")
    subject: Optional[str] = None
    model_id: Optional[str] = None
    edited: bool = Field(False, description="a person saved the labels on serve (the device's are labels.device.csv)")
    files: Dict[str, int] = Field(description="file name -> size in bytes")
    error: Optional[str] = Field(None, description="why the session's files could not be read (then counts are 0)")


class RecordingsList(_Open):
    recordings: List[RecordingItem]
    total: int = Field(description="sessions matching the filter (the newest `limit` are listed)")


class RecordingFiles(_Open):
    files: Dict[str, int] = Field(description="file name -> size in bytes; {} for a session serve does not have")


class UploadResult(_Open):
    name: str
    size: int = Field(description="the file's size after the write: the next offset")
    stored_as: Optional[str] = Field(
        None, description="labels.csv only: labels.csv, or labels.device.csv when a person edited the labels on serve"
    )
    edited: Optional[bool] = Field(None, description="labels.csv only: whether a person's edit wins")


class UploadConflict(_Open):
    detail: str
    size: int = Field(description="the file's current size: resume the upload at this offset")


class RecordingSignal(_Open):
    channels: List[str]
    t: List[float] = Field(description="Unix seconds, ascending")
    values: List[List[Optional[float]]] = Field(description="one list per channel, aligned with t (raw values)")
    decimated: bool = Field(description="true: each bucket of samples is its min and max (in time order)")
    samples: int = Field(description="samples in the range before decimation")


class LabelSegmentModel(_Open):
    label: str
    start: float
    end: Optional[float] = Field(description="null: open, running past the last sample")


class RecordingLabels(_Open):
    segments: List[LabelSegmentModel]
    edited: bool = Field(description="a person saved these labels on serve")


class Deleted(_Open):
    device_id: str
    session_id: str
    deleted: bool


class CommandSent(_Open):
    device_id: str
    topic: str
    payload: str = Field(description="what was published (QoS 1, not retained)")


class RelaySignal(_Open):
    session_id: Optional[str] = None
    channels: List[str]
    t: List[float] = Field(description="Unix seconds (device clock), ascending: the last ~30 s heard")
    values: List[List[float]] = Field(description="one list per channel, aligned with t")


class DeviceRecording(_Open):
    state: Optional[Dict[str, Any]] = Field(
        description="the device's last retained record/state ({recording, session_id, label, samples, bytes, "
        "budget_bytes, classes, channels, sample_rate_hz, error}); null when none was heard"
    )
    state_at: Optional[float] = Field(None, description="when serve received that state (Unix seconds)")
    signal: RelaySignal
    broker: bool = Field(description="whether serve has a broker (without one, state stays null)")


# Request bodies: strict (no coercion, no unknown keys), so the schema and the check agree.


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SegmentIn(_Strict):
    label: str = Field(min_length=1, max_length=64, description="a class name (no control characters)")
    start: float = Field(ge=0, lt=253402300800.0, description="Unix seconds")
    end: Optional[float] = Field(
        None, ge=0, lt=253402300800.0, description="Unix seconds after start; null: open (past the last sample)"
    )


class LabelsIn(_Strict):
    segments: List[SegmentIn] = Field(max_length=10_000)


class RecordCommand(_Strict):
    action: Literal["start", "stop"]


class LabelCommand(_Strict):
    label: Optional[str] = Field(
        None, min_length=1, max_length=64, description="a class name; null ends the current segment"
    )


class CorrectCommand(_Strict):
    label: str = Field(min_length=1, max_length=64, description="what the last seconds really were")
    ts: Optional[float] = Field(
        None, ge=0, le=1e10, description="Unix seconds the correction ends at; null: the device's now"
    )


# ---------------------------------------------------------------------------------------------- bundles


class BundleStream(_Open):
    """What a device's sensor stream must be for the bundle: its preprocessing's rate, window and channels."""

    sample_rate_hz: float
    window: int = Field(description="samples (frames for a video bundle) per window")
    stride: int = Field(description="samples between the starts of two windows")
    channels: List[str]


class BundleItem(_Open):
    id: str = Field(description="<model_id>-<the first 12 hex digits of sha256>: the same bundle, the same id")
    model_id: str
    kind: str = Field(description="sensor or video")
    labels: List[str]
    default_variant: str
    variants: List[str]
    sha256: str = Field(description="of the stored tar (GET .../bundle.tar), which is also its ETag")
    size_bytes: int = Field(description="the stored tar's size")
    signed_by: Optional[str] = Field(
        description="bundle.sig's key_id, null when unsigned; not verified by serve (a device checks it against "
        "the keys it trusts)"
    )
    created_at: float = Field(description="when serve stored it (Unix seconds)")
    stream: BundleStream


class BundlesList(_Open):
    bundles: List[BundleItem] = Field(description="newest first")


# ---------------------------------------------------------------------------------------------- rollouts


class RolloutStage(_Open):
    devices: List[str]
    state: str = Field(description="pending, running, passed, failed or stopped")
    started_at: Optional[float] = None
    ended_at: Optional[float] = None


class Rollout(_Open):
    id: str
    bundle_id: str
    model_id: str
    sha256: str
    size_bytes: int
    state: str = Field(description="running, done, failed or stopped")
    reason: Optional[str] = Field(None, description="why it failed or stopped")
    created_at: float
    stage: int = Field(description="the index of the current stage")
    stages: List[RolloutStage]
    criteria: Dict[str, float]
    devices: Dict[str, Dict[str, Any]] = Field(
        description="device -> stage, state, reason, active_at, from_seq, health"
    )


class RolloutList(_Open):
    rollouts: List[Rollout]


class FleetDevice(_Open):
    device_id: str
    model_id: Optional[str] = None
    last_seen: float
    status: Optional[str] = None
    update: Optional[Dict[str, Any]] = Field(None, description="the device's last update/state message")


class FleetResponse(_Open):
    devices: List[FleetDevice]


# ---------------------------------------------------------------------------------------------- explanations


class OcclusionAttribution(_Open):
    """``edge_har.core.attribution.Attribution.to_json()``: one value per (time segment, channel) cell."""

    method: str = Field(description="occlusion: patches of each channel hidden in turn (set to its training mean)")
    target: int = Field(description="index of the class explained in the bundle's labels")
    probability: float = Field(description="the class's probability on the whole (unoccluded) window")
    edges: List[int] = Field(description="sample index where each time segment starts, then the window length")
    cells: List[List[float]] = Field(
        description="(segments x channels): how much the class's probability drops when the cell is hidden "
        "(the mean over the patches that hide it); positive supports the class, negative speaks against it"
    )
    calls: int = Field(description="model calls made: one for the whole window, one per hidden patch")
    ms: float = Field(description="wall time of those calls")


class ExplainResponse(_Open):
    """Why one window got its label: its samples as the model saw them and the occlusion attribution."""

    model_id: str
    variant: str = Field(description="the TFLite variant the explanation ran through (the one predictions use)")
    source: str = Field(description="the upload's file name, or device/session of a stored recording")
    index: int = Field(description="the window's index among the windows the source makes")
    windows: int = Field(description="how many windows the source makes")
    start_s: float = Field(description="window start, seconds from the source's first sample")
    end_s: float
    start_ts: Optional[float] = Field(None, description="a stored recording's window start in Unix seconds")
    label: str = Field(description="what the model says for this window")
    confidence: float
    probabilities: Dict[str, float]
    explained: str = Field(description="the label explained: the predicted one unless `target` named another")
    explained_probability: float = Field(description="the explained label's probability on this window")
    channels: List[str]
    units: str = Field(description="the bundle's unit of the samples after value scaling (may be empty)")
    sample_rate_hz: float = Field(description="the model's rate: the samples' spacing")
    samples: List[List[float]] = Field(
        description="one list per channel: the window as the model saw it (resampled, scaled), de-normalised "
        "back to physical units with the bundle's mean and std"
    )
    attribution: OcclusionAttribution
    ms: float = Field(description="time the attribution took")
    calls: int = Field(description="model calls the attribution made")
