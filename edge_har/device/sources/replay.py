"""Replay of recorded data as a sensor stream: the demo, the CI smoke test and the benchmarks' input.

Recordings are read with the data formats ``edge-har convert`` and ``evaluate`` read with
(:mod:`edge_har.core.formats`): by default the format, the options and so the sample rate the
bundle records (``provenance.dataset.reader`` in bundle.json), so the same raw files give the
same windows on the device as in training, and the runtime resamples them to the model's rate
with the function training used. Each recording starts a new segment (the runtime does not let
a window span two recordings, as training never did) and carries its label, which the daemon
passes on as ground truth.

Pacing: ``realtime`` delivers ``chunk_samples`` every ``chunk_samples / (rate_hz * speed)``
seconds on a fixed schedule (no drift from sleep jitter), time-stamped with the wall clock;
otherwise chunks come as fast as the consumer takes them, time-stamped in recording time
(replay start + sample index / rate), so window timestamps stay in order.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from edge_har.core.formats import DatasetError, ReaderRecord, formats, load_dataset
from edge_har.core.formats.common import CommonOptions
from edge_har.core.recordings import Recording, RecordingError, read_samples_result
from edge_har.device.sources.base import Chunk, SampleChecker, Source, SourceContext, SourceError
from edge_har.device.sources.config_base import SensorSourceConfig, SourceConfigBase, Where, resolve_path

# A replayed file's bad lines are counted by the reasons every source uses (columns, text, nan), plus
# ``encoding`` for a line that is not UTF-8 (edge_har.core.recordings.BAD_*); one bad byte costs one line.

log = logging.getLogger(__name__)

FAST_CHUNK = 256


class ReplaySourceConfig(SensorSourceConfig):
    """Replays recorded data as if it came from a sensor; emits each recording's ground-truth label,
    so the predictions can be scored (``extra.truth`` in the prediction payload)."""

    type: Literal["replay"] = Field(description="Source type.")
    path: Path = Field(
        description="Recording(s): a folder or a file, read as `format` says (the layout the model was trained on)."
    )
    format: Optional[str] = Field(
        None,
        description=(
            "A data format of `edge-har convert --format` (folder, csv, names, intervals, hmp, ...), or 'file': one "
            "recording of whitespace/comma separated samples (set label for its ground truth). Default: the format "
            "the bundle was converted from (bundle.json provenance.dataset.reader), else folder."
        ),
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The format's options by name, as convert's flags without the dashes (sample_rate, columns, "
            "name_regex, ...). Default: the options the bundle records, when format is the bundle's; these replace them."
        ),
    )
    label_col: Optional[str] = Field(None, description="csv: the column holding the activity label (required for csv).")
    channel_cols: Optional[list[str]] = Field(
        None,
        min_length=1,
        description="csv: the columns holding the channels, in the model's channel order (default: the rest).",
    )
    subject_col: Optional[str] = Field(None, description="csv: the column naming the subject, if any.")
    timestamp_col: Optional[str] = Field(
        None,
        description="csv: a timestamp column, left out of the channels; each recording is resampled by it, as "
        "convert's --timestamp-column does (options: timestamp_unit, resample_rate, max_gap).",
    )
    label: Optional[str] = Field(None, description="file: the ground-truth label of the recording (optional).")
    rate_hz: Optional[float] = Field(
        None,
        ge=0.1,
        le=100_000,
        description="Rate the recordings were made at, 0.1..100000 Hz (default: the bundle's sample rate).",
    )
    realtime: bool = Field(
        True,
        description=(
            "true: deliver samples at rate_hz (x speed), like a live sensor; false: as fast as possible (benchmarks). "
            "When false, the window queue waits instead of dropping, so every window is inferred."
        ),
    )
    speed: float = Field(
        1.0,
        ge=0.01,
        le=10_000,
        description="realtime pacing factor (0.01..10000): 2.0 replays twice as fast as recorded.",
    )
    loop: bool = Field(False, description="Start again from the first recording after the last one.")
    stop_at_end: bool = Field(
        False,
        description=(
            "At the end (without loop): true makes the daemon process what is left, publish 'offline' and exit 0; "
            "false keeps it running (status online, stats published) until it is stopped."
        ),
    )
    chunk_samples: Optional[int] = Field(
        None,
        ge=1,
        le=100_000,
        description="Samples per chunk handed to the runtime, 1..100000 (default: 1 when realtime, 256 otherwise).",
    )

    @model_validator(mode="after")
    def _format_keys(self) -> ReplaySourceConfig:
        known = (*formats(), FILE)
        if self.format is not None and self.format not in known:
            raise ValueError(f"format {self.format!r}: unknown; choose one of {', '.join(known)}")
        if self.format == "csv" and not self.label_col and "label_column" not in self.options:
            raise ValueError("format csv needs label_col (the column holding the activity label)")
        csv_only = [
            k for k in ("label_col", "channel_cols", "subject_col", "timestamp_col") if getattr(self, k) is not None
        ]
        if self.format != "csv" and csv_only:
            raise ValueError(
                f"{', '.join(csv_only)}: only for format csv (format is {self.format or 'the bundle one'})"
            )
        if self.label is not None and self.format != FILE:
            raise ValueError(f"label only applies to format file (format {self.format} reads labels from the data)")
        if self.format == FILE and self.options:
            raise ValueError("options do not apply to format file (one recording of numeric columns)")
        if self.format not in (None, FILE):
            taken = {*formats()[self.format].options.model_fields, *CommonOptions.model_fields}
            unknown = sorted(set(self.options) - taken)
            if unknown:
                raise ValueError(
                    f"options {', '.join(unknown)}: not options of format {self.format} ({', '.join(sorted(taken))})"
                )
        return self

    def lossless(self) -> bool:
        return not self.realtime

    def stops_at_end(self) -> bool:
        return self.stop_at_end

    def channel_count(self) -> Optional[tuple[str, int]]:
        return ("channel_cols", len(self.channel_cols)) if self.channel_cols is not None else None

    def resolve_paths(self, base: Path) -> SourceConfigBase:
        return self.model_copy(update={"path": resolve_path(self.path, base)})

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        if not self.path.exists():
            return [f"{where('path')}: {self.path} does not exist"], []
        if self.format == FILE and not self.path.is_file():
            return [f"{where('path')}: {self.path} is not a file (format file)"], []
        return [], []


FILE = "file"  # one recording, no labels: a replay-only "format"
# Options a replay leaves out of the bundle's: the daemon maps the truth through the bundle's label
# map itself, and a replay plays every recording, not only the classes the model was trained on.
NOT_REPLAYED = ("label_map", "classes")
LEGACY_CSV_KEYS = {
    "label_col": "label_column",
    "channel_cols": "channels",
    "subject_col": "subject_column",
    "timestamp_col": "timestamp_column",
}


def bundle_reader(bundle_dir: Optional[Path]) -> Optional[ReaderRecord]:
    """The reader record of ``<bundle_dir>/bundle.json`` (format + options convert read the data
    with), or None for a bundle without one (an older writer) or one that cannot be read."""
    if bundle_dir is None:
        return None
    try:
        doc = json.loads((Path(bundle_dir) / "bundle.json").read_text(encoding="utf-8"))
        record = ((doc.get("provenance") or {}).get("dataset") or {}).get("reader")
        return ReaderRecord.model_validate(record) if isinstance(record, dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def replay_reader(
    cfg: ReplaySourceConfig, bundle: Optional[ReaderRecord], model_rate_hz: float
) -> tuple[str, dict[str, Any]]:
    """(format, options) a replay reads with: the config's, filling in from the bundle's record.

    Bad lines are skipped (``skip_bad``) where the format can, as a live source drops malformed
    samples; a format that needs a rate and has none from either gets ``rate_hz`` or the model's.
    """
    if cfg.format == FILE:
        return FILE, {}
    name = cfg.format or (bundle.format if bundle is not None and bundle.format in formats() else "folder")
    options: dict[str, Any] = dict(bundle.options) if bundle is not None and bundle.format == name else {}
    for key in NOT_REPLAYED:
        options.pop(key, None)
    options.update({new: getattr(cfg, old) for old, new in LEGACY_CSV_KEYS.items() if getattr(cfg, old) is not None})
    options.update(cfg.options)
    fields = formats()[name].options.model_fields
    if "skip_bad" in fields:
        options["skip_bad"] = True
    if "sample_rate" in fields:
        if cfg.rate_hz:
            options["sample_rate"] = cfg.rate_hz
        elif options.get("sample_rate") is None and not options.get("timestamp_column"):
            options["sample_rate"] = model_rate_hz
    return name, options


def load_recordings(
    cfg: ReplaySourceConfig,
    n_channels: int,
    skipped: Optional[dict[str, int]] = None,
    reasons: Optional[dict[str, int]] = None,
    *,
    bundle: Optional[ReaderRecord] = None,
    model_rate_hz: Optional[float] = None,
) -> list[Recording]:
    """The recordings a replay config names, read by the data format of :func:`replay_reader`;
    SourceError if none, or if they do not have the model's ``n_channels`` channels.

    Malformed lines in the files are skipped (counted per file in ``skipped``, by reason in
    ``reasons``), as a live source drops malformed samples: a replay is a stand-in for a
    sensor, not a data set check.
    """
    skipped = {} if skipped is None else skipped
    reasons = {} if reasons is None else reasons
    path = Path(cfg.path)
    if not path.exists():
        raise SourceError(f"source.path: {path} does not exist")
    name, options = replay_reader(cfg, bundle, model_rate_hz or cfg.rate_hz or 1.0)
    how = f"format {name}" + (" from the bundle" if cfg.format is None and bundle is not None else "")
    try:
        if name == FILE:
            result = read_samples_result(path, n_channels=n_channels, skip_bad=True)
            if result.skipped:
                skipped[str(path)] = result.skipped
            for reason, n in result.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
            out = [Recording(samples=result.samples, label=cfg.label or "", source=str(path))]
        else:
            ds = load_dataset(path, format=name, **options)
            skipped.update(ds.skipped)
            for reason, n in ds.bad_line_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
            rate = ds.sample_rate_hz
            out = [
                r if r.sample_rate_hz else Recording(r.samples, r.label, r.source, r.subject, rate)
                for r in ds.recordings
            ]
    except (DatasetError, RecordingError) as exc:
        raise SourceError(f"source.path: {exc} ({how})") from exc
    out = [r for r in out if len(r.samples)]
    if not out:
        raise SourceError(f"source.path: {path} holds no samples to replay")
    for r in out:
        arr = np.asarray(r.samples)
        if arr.ndim != 2 or arr.shape[1] != n_channels:
            raise SourceError(
                f"source.path: {r.source} has samples of shape {arr.shape}; the model takes {n_channels} channels "
                f"({how}; source.options.columns picks columns)"
            )
    return out


@dataclass
class LoadedReplay:
    """A replay set read by :func:`check_replay`, which :meth:`ReplaySource.start` replays instead
    of reading the files again (``edge-har run`` checks the set, then starts the source)."""

    recordings: list[Recording]
    skipped: dict[str, int]  # malformed lines per file
    reasons: dict[str, int]  # malformed lines by reason


def check_replay(
    cfg: ReplaySourceConfig, n_channels: int, bundle_dir: Path, model_rate_hz: float
) -> tuple[list[str], Optional[LoadedReplay]]:
    """What ``validate-config`` says about a replay: what :meth:`ReplaySource.start` would refuse,
    found by reading the files with the same reader (messages without ``source.path:``), and the
    set it read when there is nothing to say."""
    skipped: dict[str, int] = {}
    reasons: dict[str, int] = {}
    try:
        recordings = load_recordings(
            cfg, n_channels, skipped, reasons, bundle=bundle_reader(bundle_dir), model_rate_hz=model_rate_hz
        )
    except SourceError as exc:
        return [str(exc).removeprefix("source.path: ")], None
    return [], LoadedReplay(recordings, skipped, reasons)


class ReplaySource(Source):
    kind = "replay"

    @classmethod
    def from_config(cls, cfg: SourceConfigBase, ctx: SourceContext) -> ReplaySource:
        assert isinstance(cfg, ReplaySourceConfig)
        bundle = bundle_reader(ctx.bundle) if ctx.bundle is not None else None
        source = cls(cfg, ctx.n_channels, default_rate_hz=ctx.model_rate_hz, bundle=bundle)
        if isinstance(ctx.preloaded, LoadedReplay):
            source._preloaded = ctx.preloaded
        return source

    def __init__(
        self,
        cfg: ReplaySourceConfig,
        n_channels: int,
        default_rate_hz: float,
        bundle: Optional[ReaderRecord] = None,
    ) -> None:
        super().__init__(n_channels, name=f"replay {cfg.path}")
        self.cfg = cfg
        self.default_rate_hz = default_rate_hz
        self.bundle = bundle
        self.recordings: list[Recording] = []
        self.checker = SampleChecker(n_channels, self.malformed, cfg.valid_range)
        self.chunk_samples = cfg.chunk_samples or (1 if cfg.realtime else FAST_CHUNK)
        self._rec = 0  # index of the recording being replayed
        self._pos = 0  # next sample in it
        self._passes = 0
        self._replayed = 0  # samples replayed (good or not), for recording time
        self._t0 = 0.0
        self._next_due = 0.0  # monotonic time the next chunk is due (realtime)
        self._stopped = False
        self._preloaded: Optional[LoadedReplay] = None  # what the start-up checks read, replayed once

    @property
    def rate_hz(self) -> float:
        if self.cfg.rate_hz:
            return self.cfg.rate_hz
        rates = {r.sample_rate_hz for r in self.recordings if r.sample_rate_hz}
        if len(rates) == 1:
            return float(rates.pop())
        return self.default_rate_hz

    def start(self) -> None:
        if self._preloaded is not None:
            loaded, self._preloaded = self._preloaded, None
            self.recordings, skipped, reasons = loaded.recordings, loaded.skipped, loaded.reasons
        else:
            skipped, reasons = {}, {}
            self.recordings = load_recordings(
                self.cfg, self.n_channels, skipped, reasons, bundle=self.bundle, model_rate_hz=self.default_rate_hz
            )
        files = ", ".join(f"{n} in {file}" for file, n in list(skipped.items())[:3])
        for reason, n in sorted(reasons.items()):
            self.malformed.add(reason, n, example=f"{n} line(s) of the recordings ({files})")
        rates = {r.sample_rate_hz for r in self.recordings if r.sample_rate_hz}
        if not self.cfg.rate_hz and len(rates) > 1:
            log.warning(
                "replay: recordings have different rates %s; replaying all at %g Hz (set source.rate_hz)",
                sorted(rates),
                self.rate_hz,
            )
        total = sum(len(r) for r in self.recordings)
        log.info(
            "replay: %d recording(s), %d samples (%.0f s at %g Hz) from %s, %s%s",
            len(self.recordings),
            total,
            total / self.rate_hz,
            self.rate_hz,
            self.cfg.path,
            f"real time x{self.cfg.speed:g}" if self.cfg.realtime else "as fast as possible",
            ", looping" if self.cfg.loop else "",
        )
        self._rec = self._pos = self._passes = self._replayed = 0
        self._t0 = time.time()
        self._next_due = time.monotonic()
        self._stopped = False
        self._status.finished = False

    def stop(self) -> None:
        self._stopped = True

    def read(self, timeout: float) -> Optional[Chunk]:
        if self._stopped or self._status.finished:
            time.sleep(timeout)
            return None
        if self.cfg.realtime:
            wait = self._next_due - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
        if self._rec >= len(self.recordings):
            if not self.cfg.loop:
                self._status.finished = True
                log.info("replay: end of the recordings after %d sample(s)", self.samples_read)
                return None
            self._rec, self._pos = 0, 0
            self._passes += 1
        rec = self.recordings[self._rec]
        segment_start = self._pos == 0
        stop = min(self._pos + self.chunk_samples, len(rec.samples))
        raw = rec.samples[self._pos : stop]
        self._pos = stop
        if self._pos >= len(rec.samples):
            self._rec += 1
            self._pos = 0
        if self.cfg.realtime:
            period = len(raw) / (self.rate_hz * self.cfg.speed)
            self._next_due = max(self._next_due + period, time.monotonic() - 1.0)  # catch up at most 1 s
        good = self.checker.check_array(raw)
        self._replayed += len(raw)
        chunk = self._chunk(good, label=rec.label or None, segment_start=segment_start)
        if chunk is not None and not self.cfg.realtime:
            # As fast as possible, wall time says nothing about when a sample was "taken": use
            # recording time from the start of the replay, so window timestamps stay in order.
            chunk.ts = self._t0 + (self._replayed - 1) / self.rate_hz
        return chunk

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(
            {
                "recording": min(self._rec, len(self.recordings)),
                "recordings": len(self.recordings),
                "passes": self._passes,
            }
        )
        return out
