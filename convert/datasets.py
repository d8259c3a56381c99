"""Data-set loaders for training, all taking a path, plus training windows.

Three layouts: a folder of recordings (``<root>/<Class>/<recording>.txt``,
e.g. the UCI HMP wrist-accelerometer set), one long CSV, and UCI HAR in its
original extracted layout. The file readers themselves live in
``edge_har.recordings`` because the device's replay source reads the same
files. No TensorFlow here: evaluation and benchmarks use this module on a Pi.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.preprocessing import Preprocessing, recording_to_windows
from edge_har.recordings import (
    Recording,
    RecordingError,
    list_folder_files,
    load_folder_recordings,
    load_long_csv_recordings,
    read_samples_result,
)

log = logging.getLogger(__name__)

FORMATS = ("auto", "hmp", "folder", "csv", "uci-har")

# UCI HMP (Bruno et al., ICRA 2013): 3-axis wrist accelerometer, 32 Hz,
# codes 0..63 for -1.5 g..+1.5 g (MANUAL.txt 4.2: real = -1.5 + code/63 * 3).
HMP_RATE_HZ = 32.0
HMP_CHANNELS = ("x", "y", "z")
HMP_SCALE = (3.0 / 63.0,)
HMP_OFFSET = (-1.5,)
HMP_SUBJECT_REGEX = r"-([fm]\d+)\.txt$"
HMP_FILE_PATTERN = re.compile(r"^Accelerometer-\d{4}(-\d{2}){5}-.+-[fm]\d+\.txt$")

# UCI HAR (Anguita et al., ESANN 2013): 50 Hz, 128-sample windows (2.56 s, 50% overlap).
UCI_HAR_RATE_HZ = 50.0
UCI_HAR_WINDOW = 128
UCI_HAR_SIGNALS = (
    "body_acc_x", "body_acc_y", "body_acc_z",
    "body_gyro_x", "body_gyro_y", "body_gyro_z",
    "total_acc_x", "total_acc_y", "total_acc_z",
)  # fmt: skip


class DatasetError(ValueError):
    """A data set that cannot be used as given; the message names the file or option."""


@dataclass
class Dataset:
    name: str
    root: Path
    recordings: list[Recording]
    labels: list[str]
    channels: tuple[str, ...]
    sample_rate_hz: float
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)
    units: str = ""
    file_list_sha256: str = ""
    n_files: int = 0
    native_window: int | None = None
    predefined_split: dict[str, str] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    format: str = "folder"

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def describe(self) -> dict[str, Any]:
        """Provenance for bundle.json: enough to know which data made a model."""
        subjects = sorted({r.subject for r in self.recordings if r.subject})
        return {
            "name": self.name,
            "format": self.format,
            "path": str(Path(self.root).resolve()),
            "n_recordings": len(self.recordings),
            "n_files": self.n_files,
            "n_samples": int(sum(len(r) for r in self.recordings)),
            "file_list_sha256": self.file_list_sha256,
            "recordings_per_class": dict(sorted(Counter(r.label for r in self.recordings).items())),
            "subjects": subjects,
            "sample_rate_hz": self.sample_rate_hz,
            "channels": list(self.channels),
            "skipped_lines": int(sum(self.skipped.values())),
        }


def file_list_hash(files: Sequence[Path], root: Path) -> str:
    """sha256 over sorted relative paths and sizes: cheap, and changes when any file does."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda p: str(p.relative_to(root)) if p != root else p.name):
        rel = f.relative_to(root) if f != root else Path(f.name)
        digest.update(f"{rel.as_posix()}\t{f.stat().st_size}\n".encode())
    return digest.hexdigest()


def _labels(recordings: list[Recording], where: Path) -> list[str]:
    if not recordings:
        raise DatasetError(f"{where}: no recordings")
    return sorted({r.label for r in recordings})


def _channels(channels: Sequence[str] | None, width: int, where: Path) -> tuple[str, ...]:
    if channels is None:
        return tuple(f"ch{i}" for i in range(width))
    if len(channels) != width:
        raise DatasetError(f"{where}: {len(channels)} channel names given ({', '.join(channels)}) but the data has {width} columns")
    return tuple(channels)


def _check_width(recordings: list[Recording]) -> int:
    widths = {r.samples.shape[1] for r in recordings}
    if len(widths) > 1:
        by_width: dict[int, str] = {}
        for r in recordings:
            by_width.setdefault(r.samples.shape[1], r.source)
        detail = "; ".join(f"{w} columns in {src}" for w, src in sorted(by_width.items()))
        raise DatasetError(f"recordings differ in column count: {detail}")
    return widths.pop()


def _wrap(exc: RecordingError) -> DatasetError:
    return DatasetError(str(exc))


def load_folder(
    root: str | Path,
    *,
    sample_rate_hz: float,
    subject_regex: str | None = None,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    include_model: bool = False,
    skip_bad: bool = False,
    name: str | None = None,
) -> Dataset:
    root = Path(root)
    if sample_rate_hz is None or sample_rate_hz <= 0:
        raise DatasetError(f"{root}: a folder of recordings needs --sample-rate (Hz, > 0)")
    skipped: dict[str, int] = {}
    try:
        files = [f for _, f in list_folder_files(root, include_model=include_model)]
        recordings = load_folder_recordings(
            root,
            subject_regex=subject_regex,
            include_model=include_model,
            skip_bad=skip_bad,
            sample_rate_hz=sample_rate_hz,
            skipped=skipped,
        )
    except RecordingError as exc:
        raise _wrap(exc) from exc
    width = _check_width(recordings)
    return Dataset(
        name=name or root.name,
        root=root,
        recordings=recordings,
        labels=_labels(recordings, root),
        channels=_channels(channels, width, root),
        sample_rate_hz=float(sample_rate_hz),
        scale=tuple(float(v) for v in scale),
        offset=tuple(float(v) for v in offset),
        units=units,
        file_list_sha256=file_list_hash(files, root),
        n_files=len(files),
        skipped=skipped,
        format="folder",
    )


def load_hmp(root: str | Path, *, include_model: bool = False, skip_bad: bool = False) -> Dataset:
    """The UCI HMP wrist-accelerometer set in its original layout (see its README.txt, MANUAL.txt)."""
    ds = load_folder(
        root,
        sample_rate_hz=HMP_RATE_HZ,
        subject_regex=HMP_SUBJECT_REGEX,
        channels=HMP_CHANNELS,
        scale=HMP_SCALE,
        offset=HMP_OFFSET,
        units="g",
        include_model=include_model,
        skip_bad=skip_bad,
        name="hmp",
    )
    ds.format = "hmp"
    return ds


def load_long_csv(
    path: str | Path,
    *,
    label_col: str,
    channel_cols: Sequence[str] | None = None,
    subject_col: str | None = None,
    timestamp_col: str | None = None,
    sample_rate_hz: float | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    skip_bad: bool = False,
) -> Dataset:
    path = Path(path)
    if not label_col:
        raise DatasetError(f"{path}: a long CSV needs --label-column")
    skipped: dict[str, int] = {}
    try:
        recordings = load_long_csv_recordings(
            path,
            label_col=label_col,
            channel_cols=channel_cols,
            subject_col=subject_col,
            timestamp_col=timestamp_col,
            skip_bad=skip_bad,
            sample_rate_hz=sample_rate_hz,
            skipped=skipped,
        )
    except RecordingError as exc:
        raise _wrap(exc) from exc
    rate = sample_rate_hz or recordings[0].sample_rate_hz
    if not rate:
        raise DatasetError(f"{path}: no sample rate: pass --sample-rate or --timestamp-column")
    with open(path, newline="", encoding="utf-8") as fh:
        header = fh.readline().strip()
    used = {label_col, subject_col, timestamp_col}
    names = channel_cols or [h.strip() for h in re.split(r"[,;\t]", header) if h.strip() and h.strip() not in used]
    return Dataset(
        name=path.stem,
        root=path.parent,
        recordings=recordings,
        labels=_labels(recordings, path),
        channels=tuple(names),
        sample_rate_hz=float(rate),
        scale=tuple(float(v) for v in scale),
        offset=tuple(float(v) for v in offset),
        units=units,
        file_list_sha256=file_list_hash([path], path.parent),
        n_files=1,
        skipped=skipped,
        format="csv",
    )


def load_uci_har(root: str | Path, *, skip_bad: bool = False) -> Dataset:
    """UCI HAR ("UCI HAR Dataset/"): its train/test partition by subject is kept as the split.

    Each 128-sample window is one recording, so the windows of one subject stay
    on one side of the predefined split. Channels: UCI_HAR_SIGNALS order.
    """
    root = Path(root)
    if (root / "UCI HAR Dataset").is_dir():
        root = root / "UCI HAR Dataset"
    activity_names: dict[int, str] = {}
    labels_file = root / "activity_labels.txt"
    if labels_file.is_file():
        for lineno, line in enumerate(labels_file.read_text().splitlines(), 1):
            parts = line.split()
            if len(parts) < 2 or not parts[0].isdigit():
                if line.strip():
                    raise DatasetError(f"{labels_file}:{lineno}: expected '<id> <NAME>', got {line.strip()!r}")
                continue
            activity_names[int(parts[0])] = parts[1]
    recordings: list[Recording] = []
    predefined: dict[str, str] = {}
    files: list[Path] = []
    skipped: dict[str, int] = {}
    for side in ("train", "test"):
        folder = root / side / "Inertial Signals"
        if not folder.is_dir():
            raise DatasetError(f"{root}: missing '{side}/Inertial Signals' (not the UCI HAR layout)")
        signals = []
        for sig in UCI_HAR_SIGNALS:
            f = folder / f"{sig}_{side}.txt"
            if not f.is_file():
                raise DatasetError(f"{f}: missing signal file")
            try:
                res = read_samples_result(f, n_channels=UCI_HAR_WINDOW, skip_bad=False)
            except RecordingError as exc:
                raise _wrap(exc) from exc
            signals.append(res.samples)
            files.append(f)
        y_file, s_file = root / side / f"y_{side}.txt", root / side / f"subject_{side}.txt"
        try:
            y = read_samples_result(y_file, n_channels=1).samples[:, 0].astype(int)
            subj = read_samples_result(s_file, n_channels=1).samples[:, 0].astype(int)
        except RecordingError as exc:
            raise _wrap(exc) from exc
        files += [y_file, s_file]
        n = {len(s) for s in signals} | {len(y), len(subj)}
        if len(n) != 1:
            raise DatasetError(f"{root / side}: signal, y and subject files differ in row count ({sorted(n)})")
        stack = np.stack(signals, axis=-1)  # (n, 128, 9)
        for i in range(len(y)):
            source = f"{side}/window-{i:05d}"
            label = activity_names.get(int(y[i]), str(int(y[i])))
            recordings.append(Recording(stack[i].astype(np.float32), label, source, f"s{int(subj[i])}", UCI_HAR_RATE_HZ))
            predefined[source] = side
    return Dataset(
        name="uci-har",
        root=root,
        recordings=recordings,
        labels=_labels(recordings, root),
        channels=UCI_HAR_SIGNALS,
        sample_rate_hz=UCI_HAR_RATE_HZ,
        units="g (acc), rad/s (gyro)",
        file_list_sha256=file_list_hash(files, root),
        n_files=len(files),
        native_window=UCI_HAR_WINDOW,
        predefined_split=predefined,
        skipped=skipped,
        format="uci-har",
    )


def detect_format(path: Path) -> str:
    if path.is_file():
        return "csv"
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    if (path / "train" / "Inertial Signals").is_dir() or (path / "UCI HAR Dataset").is_dir():
        return "uci-har"
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir())[:3]:
            if HMP_FILE_PATTERN.match(f.name):
                return "hmp"
    return "folder"


def load_dataset(path: str | Path, *, format: str = "auto", **options: Any) -> Dataset:
    """Dispatch on ``format`` (auto-detected by default); options are the loader's keywords."""
    path = Path(path)
    if format not in FORMATS:
        raise DatasetError(f"unknown data format {format!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    fmt = detect_format(path) if format == "auto" else format
    options = {k: v for k, v in options.items() if v is not None}
    allowed = {
        "hmp": {"include_model", "skip_bad"},
        "folder": {"sample_rate_hz", "subject_regex", "channels", "scale", "offset", "units", "include_model", "skip_bad", "name"},
        "csv": {"label_col", "channel_cols", "subject_col", "timestamp_col", "sample_rate_hz", "scale", "offset", "units", "skip_bad"},
        "uci-har": {"skip_bad"},
    }[fmt]
    ignored = sorted(set(options) - allowed)
    if ignored:
        log.warning("data format %s ignores option(s): %s", fmt, ", ".join(ignored))
    kwargs = {k: v for k, v in options.items() if k in allowed}
    if fmt == "hmp":
        return load_hmp(path, **kwargs)
    if fmt == "folder":
        if "sample_rate_hz" not in kwargs:
            raise DatasetError(f"{path}: a folder of recordings needs --sample-rate (Hz)")
        return load_folder(path, **kwargs)
    if fmt == "csv":
        if "label_col" not in kwargs:
            raise DatasetError(f"{path}: a long CSV needs --label-column")
        return load_long_csv(path, **kwargs)
    return load_uci_har(path, **kwargs)


# ------------------------------------------------------------------ windows


@dataclass
class WindowSet:
    x: np.ndarray  # (n, window, C) float32, scaled but not normalised
    y: np.ndarray  # (n,) int64 label index into dataset.labels
    groups: np.ndarray  # (n,) int64 recording index into dataset.recordings
    subjects: np.ndarray  # (n,) object: subject id or None


def make_window_set(
    dataset: Dataset,
    pre: Preprocessing,
    recording_indices: Sequence[int] | np.ndarray | None = None,
    *,
    skip_short: bool = False,
) -> WindowSet:
    """Windows of the chosen recordings through edge_har.preprocessing (the device's code)."""
    indices = range(len(dataset.recordings)) if recording_indices is None else [int(i) for i in recording_indices]
    index = dataset.label_index()
    xs, ys, gs, ss = [], [], [], []
    short: list[str] = []
    for i in indices:
        rec = dataset.recordings[i]
        rate = rec.sample_rate_hz or dataset.sample_rate_hz
        windows = recording_to_windows(rec.samples, pre, source_rate_hz=rate, normalised=False)
        if len(windows) == 0:
            needed = int(np.ceil(pre.window * rate / pre.sample_rate_hz))
            if not skip_short:
                raise RecordingError(
                    f"{rec.source}: {len(rec)} samples, shorter than one window ({pre.window} samples at "
                    f"{pre.sample_rate_hz:g} Hz, i.e. {needed} at the recording's {rate:g} Hz); "
                    "use a shorter --window or --skip-short"
                )
            short.append(rec.source)
            continue
        xs.append(windows)
        ys.append(np.full(len(windows), index[rec.label], np.int64))
        gs.append(np.full(len(windows), i, np.int64))
        ss.append(np.full(len(windows), rec.subject, dtype=object))
    if short:
        log.warning("skipped %d recording(s) shorter than one window (e.g. %s)", len(short), short[0])
    if not xs:
        empty = np.empty((0, pre.window, pre.n_channels), np.float32)
        return WindowSet(empty, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, object))
    return WindowSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), np.concatenate(ss))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|ms|samples?)?\s*$")


def parse_duration(text: str | int, sample_rate_hz: float) -> int:
    """'96' or '96 samples' -> 96; '3s' -> 3 * rate; '500ms' -> 0.5 * rate (rounded)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"expected samples (e.g. 96) or a duration (e.g. 3s, 500ms), got {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    if unit in (None, "sample", "samples"):
        if value != int(value):
            raise ValueError(f"{text!r}: a count of samples must be a whole number")
        samples = int(value)
    else:
        seconds = value / 1000.0 if unit == "ms" else value
        samples = int(round(seconds * sample_rate_hz))
    if samples < 1:
        raise ValueError(f"{text!r} is less than one sample at {sample_rate_hz:g} Hz")
    return samples


# ------------------------------------------------------------------ command line


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def add_dataset_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    g = parser.add_argument_group("data set")
    g.add_argument("--data", type=Path, required=required, metavar="PATH",
                   help="the data set: a folder of <Class>/<recording>.txt files (e.g. UCI HMP), one long CSV, "
                        "or an extracted 'UCI HAR Dataset' folder")
    g.add_argument("--format", type=str, default="auto", choices=FORMATS,
                   help="layout of --data (default: auto-detect; 'hmp' = folder layout with HMP's rate, scaling and subjects)")
    g.add_argument("--subject-regex", type=str, default=None,
                   help="regex whose first group takes the subject id from a recording's file name (folder layout)")
    g.add_argument("--sample-rate", type=float, default=None, metavar="HZ",
                   help="sample rate of the recordings (required for a plain folder; for a CSV unless --timestamp-column)")
    g.add_argument("--channels", type=_names, default=None, metavar="A,B,C",
                   help="channel names in column order (folder layout) or the channel columns to use (CSV)")
    g.add_argument("--scale", type=_floats, default=None, metavar="S[,S...]",
                   help="value scaling: physical = raw * scale + offset (one value, or one per channel)")
    g.add_argument("--offset", type=_floats, default=None, metavar="O[,O...]", help="value offset, see --scale")
    g.add_argument("--units", type=str, default=None, help="unit of the scaled values, for the bundle (e.g. g)")
    g.add_argument("--label-column", type=str, default=None, help="CSV: the column holding the activity label")
    g.add_argument("--subject-column", type=str, default=None, help="CSV: the column holding the subject id")
    g.add_argument("--timestamp-column", type=str, default=None,
                   help="CSV: a time column in seconds; gives the rate when --sample-rate is absent")
    g.add_argument("--include-model-trials", action="store_true",
                   help="HMP: also use the *_MODEL folders' extra trials (skipped by default)")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip malformed lines with a warning and a count instead of stopping at the first")


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    options = {
        "subject_regex": args.subject_regex,
        "sample_rate_hz": args.sample_rate,
        "channels": args.channels if args.format != "csv" else None,
        "channel_cols": list(args.channels) if args.channels and args.format in ("csv", "auto") and Path(args.data).is_file() else None,
        "scale": args.scale,
        "offset": args.offset,
        "units": args.units,
        "label_col": args.label_column,
        "subject_col": args.subject_column,
        "timestamp_col": args.timestamp_column,
        "include_model": args.include_model_trials or None,
        "skip_bad": args.skip_bad or None,
    }
    if Path(args.data).is_file():
        options.pop("channels")
    return load_dataset(args.data, format=args.format, **options)
