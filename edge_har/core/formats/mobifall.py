"""Format ``mobifall``: trials stored as one timestamped file per sensor, each on its own clock.

MobiFall v2.0 (G. Vavoulas, M. Pediaditis, C. Chatzaki, E. G. Spanakis, M. Tsiknakis, "The
MobiFall Dataset: Fall Detection and Classification with a Smartphone", IJMSTR 2(1), 2014; its
DataDescribe.txt documents the layout): a phone in a trouser pocket,
``<root>/sub<N>/<FALLS|ADL>/<CODE>/<CODE>_<acc|gyro>_<subject>_<trial>.txt``. Each file has ``#``
header lines, a line ``@DATA``, then ``timestamp_ns, x, y, z`` (acc in m/s^2 with gravity, gyro
in rad/s). The phone delivers samples unevenly (acc about 95 Hz, gyro about 200 Hz, jitter,
pauses of 0.15-0.25 s about 2,150 times in the set and 8 longer ones up to 1.1 s), and the acc
and gyro files of a trial have their own stamps, so a trial is read by aligning its sensor files
on one regular clock (:func:`edge_har.core.timeseries.align`): the span both cover, each
interpolated linearly onto ``--resample-rate``, never across a pause longer than ``--max-gap``.
A longer pause splits the trial into recordings that stay on one side of a split.

The class is the activity code (FOL, WAL, ...: the file name's first part, which is also its
folder's name except for sub21's three SDL trials filed under FOL, whose names and headers say
SDL; ``--label-from category`` takes the folder above the code folder, FALLS / ADL, instead), the
subject the number in the file name (``--split subject --test-subjects 1,2``).
The same reader serves any set stored this way (other codes, other subject numbers, no
headers): a file needs no ``@DATA`` line, ``#`` lines are comments anywhere.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError
from edge_har.core.formats.common import ScalingOptions, channel_names, relative, scaled_dataset, skip_bad_field
from edge_har.core.formats.timestamps import summarise
from edge_har.core.recordings import BAD_COLUMNS, BAD_ENCODING, BAD_NON_FINITE, BAD_TEXT, Recording
from edge_har.core.timeseries import TIME_UNITS, ResampleReport, align, detect_time_unit

log = logging.getLogger(__name__)

NAME = "mobifall"
FILE_PATTERN = re.compile(r"^(?P<code>[A-Za-z0-9]+)_(?P<sensor>acc|gyro)_(?P<subject>\d+)_(?P<trial>\d+)\.txt$")
SENSORS = ("acc", "gyro")
UNITS = {"acc": "m/s^2", "gyro": "rad/s"}
RATE_HZ = 50.0  # --resample-rate's default: the common HAR rate, below both sensors' own rates
MAX_GAP_S = 0.3  # --max-gap's default: above the set's many 0.15-0.25 s pauses, below its 8 longer ones
TIME_UNIT = "ns"  # DataDescribe.txt: timestamp(ns)
WIDTH = 3  # values after the timestamp
DETECT_DEPTH = 4  # folders below --data that detection looks into (MobiFall's files are 3 down: sub1/FALLS/FOL/)
FLOAT32_MAX = float(np.finfo(np.float32).max)
_SURROGATE = re.compile("[\udc80-\udcff]")
_DATA_LINE = re.compile(r"^[^\S\n]*@DATA[^\S\n]*$", re.IGNORECASE | re.MULTILINE)  # the header's last line


class MobiFallOptions(ScalingOptions):
    """How to read timestamped per-sensor files; every option has a default that fits MobiFall."""

    resample_rate: Optional[float] = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="regular rate (Hz) the irregular samples are interpolated onto, the data set's rate from then "
        f"on (default {RATE_HZ:g}), e.g. --resample-rate 50",
        json_schema_extra={"metavar": "HZ", "cli_type": "rate"},
    )
    max_gap: Optional[float] = Field(
        None,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds between two samples of a file beyond which nothing is interpolated: the trial is "
        f"split there (counted) (default {MAX_GAP_S:g}), e.g. --max-gap 0.5",
        json_schema_extra={"metavar": "SECONDS"},
    )
    sensors: Optional[tuple[Literal["acc", "gyro"], ...]] = Field(
        None,
        min_length=1,
        description="which sensor files of each trial to read, aligned by timestamp, channels in this order "
        "(default acc,gyro: acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z), e.g. --sensors acc",
        json_schema_extra={"metavar": "acc,gyro", "cli_type": "names"},
    )
    label_from: Optional[Literal["code", "category"]] = Field(
        None,
        description="the class of a trial: its activity code (FOL, WAL, ..., the file name's first part and its "
        "folder) or the folder above the code folder (FALLS, ADL) "
        "(default code), e.g. --label-from category",
    )
    timestamp_unit: Optional[Literal["auto", "s", "ms", "us", "ns"]] = Field(
        None,
        description="unit of the timestamp column (default ns, as MobiFall writes; auto reads it off the median "
        "step, taking the unit that puts the rate between 1 Hz and 1 kHz), e.g. --timestamp-unit ms",
    )
    skip_bad: bool = skip_bad_field()


class MobiFallFormat(DataFormat):
    name = NAME
    options = MobiFallOptions
    detects = "a folder holding <CODE>_acc_<subject>_<trial>.txt files (MobiFall; timestamped, resampled)"
    needs = "folder"
    hint = "; MobiFall's rate comes from its timestamps (--resample-rate sets the rate it is interpolated onto)"
    help_group = (
        "timestamped per-sensor files (mobifall)",
        "each trial's sensor files are aligned by timestamp and interpolated onto one regular rate",
    )

    def detect(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        for folder, dirs, files in os.walk(path):
            deep = len(Path(folder).relative_to(path).parts) >= DETECT_DEPTH
            dirs[:] = [] if deep else sorted(d for d in dirs if not d.startswith("."))
            if any(FILE_PATTERN.match(f) for f in files):
                return True
        return False

    defaults = {
        "resample_rate": RATE_HZ,
        "max_gap": MAX_GAP_S,
        "sensors": SENSORS,
        "label_from": "code",
        "timestamp_unit": TIME_UNIT,
        "scale": (1.0,),
        "offset": (0.0,),
    }

    def load(self, path: Path, options: MobiFallOptions) -> Dataset:
        given = {k: getattr(options, k) for k in self.defaults}
        use = {k: self.defaults[k] if v is None else v for k, v in given.items()}
        return load_mobifall(
            path,
            resample_rate_hz=use["resample_rate"],
            max_gap_s=use["max_gap"],
            sensors=use["sensors"],
            label_from=use["label_from"],
            timestamp_unit=use["timestamp_unit"],
            channels=options.channels,
            scale=use["scale"],
            offset=use["offset"],
            units=options.units,
            skip_bad=options.skip_bad,
        )


# ------------------------------------------------------------------ one file


@dataclass
class TimedRead:
    """The rows of one timestamped file: stamps as written, values as float32."""

    stamps: np.ndarray  # (n,) float64
    values: np.ndarray  # (n, 3) float32
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _decode(path: Path, data: bytes, skip_bad: bool) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if skip_bad:
            return data.decode("utf-8", errors="surrogateescape")
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _fast(body: str) -> np.ndarray | None:
    """The rows in C (numpy's reader) when every line is four finite numbers; None otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except (ValueError, TypeError):
        return None
    if not len(arr):
        return np.empty((0, WIDTH + 1))
    if arr.shape[1] != WIDTH + 1 or not np.isfinite(arr).all() or np.abs(arr[:, 1:]).max() > FLOAT32_MAX:
        return None
    return arr


def read_timed_file(path: str | Path, *, skip_bad: bool = False) -> TimedRead:
    """``timestamp, x, y, z`` rows of one file, after its header (everything up to an ``@DATA`` line).

    Blank lines and ``#`` lines are skipped anywhere. A malformed row (not four comma-separated
    numbers, NaN/inf, bytes that are not UTF-8) is a :class:`DatasetError` naming the file and
    line, or with ``skip_bad`` dropped and counted by reason (``columns``, ``text``, ``nan``,
    ``encoding``, as the other formats count them). A clean file is parsed by numpy in one go;
    only a file with comments or bad rows is read line by line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = _decode(path, data, skip_bad)
    header = _DATA_LINE.search(text)
    start = header.end() if header else 0
    body = text[start:]
    arr = _fast(body) if "#" not in body and not _SURROGATE.search(body) else None
    if arr is not None:
        return TimedRead(arr[:, 0].copy(), arr[:, 1:].astype(np.float32))
    first = text.count("\n", 0, start) + 1  # the line number of the body's first line
    rows: list[list[float]] = []
    reasons: Counter[str] = Counter()
    for lineno, line in enumerate(body.split("\n"), first):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        bad = _bad(line, rows)
        if bad is None:
            continue
        reason, what = bad
        if not skip_bad:
            raise DatasetError(f"{path}:{lineno}: {what}; expected 'timestamp, x, y, z' (4 numbers): {line[:80]!r}")
        reasons[reason] += 1
    table = np.array(rows, dtype=np.float64).reshape(-1, WIDTH + 1)
    skipped = sum(reasons.values())
    if skipped:
        log.warning(
            "%s: skipped %d malformed line(s) (%s)", path, skipped, ", ".join(f"{k} {v}" for k, v in reasons.items())
        )
    return TimedRead(table[:, 0].copy(), table[:, 1:].astype(np.float32), skipped, dict(reasons))


def _bad(line: str, rows: list[list[float]]) -> tuple[str, str] | None:
    """Append the line's numbers to ``rows``, or say what is wrong with it (reason, message)."""
    if _SURROGATE.search(line):
        return BAD_ENCODING, "bytes that are not UTF-8"
    fields = line.split(",")
    if len(fields) != WIDTH + 1 or not all(f.strip() for f in fields):
        return BAD_COLUMNS, f"{len(fields)} comma-separated field(s)"
    try:
        numbers = [float(f) for f in fields]
    except ValueError:
        return BAD_TEXT, "a field that is not a number"
    if not all(np.isfinite(numbers)):
        return BAD_NON_FINITE, "NaN or infinity"
    if max(abs(v) for v in numbers[1:]) > FLOAT32_MAX:
        return BAD_NON_FINITE, "a value beyond float32"
    rows.append(numbers)
    return None


# ------------------------------------------------------------------ the data set


@dataclass
class _Trial:
    code: str
    category: str
    subject: str
    trial: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return next(iter(self.files.values())).parent.name


def find_trials(root: Path) -> tuple[list[_Trial], int]:
    """Trials under ``root`` (any depth) by (folder, code, subject, trial), and the count of .txt files
    whose names are not ``<CODE>_<sensor>_<subject>_<trial>.txt``."""
    trials: dict[tuple[str, str, str, str], _Trial] = {}
    other = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        folder = Path(dirpath)
        for name in sorted(files):
            match = FILE_PATTERN.match(name)
            if match is None:
                other += name.lower().endswith(".txt") and not name.startswith(".") and folder != root
                continue
            key = (str(folder), match["code"], match["subject"], match["trial"])
            trial = trials.setdefault(
                key,
                _Trial(
                    code=match["code"],
                    category=folder.parent.name if root in folder.parent.parents else "",
                    subject=match["subject"],
                    trial=match["trial"],
                ),
            )
            trial.files[match["sensor"]] = folder / name
    return [trials[k] for k in sorted(trials)], other


def load_mobifall(
    root: str | Path,
    *,
    resample_rate_hz: float = RATE_HZ,
    max_gap_s: float = MAX_GAP_S,
    sensors: tuple[str, ...] = SENSORS,
    label_from: str = "code",
    timestamp_unit: str = TIME_UNIT,
    channels: tuple[str, ...] | None = None,
    scale: tuple[float, ...] = (1.0,),
    offset: tuple[float, ...] = (0.0,),
    units: str | None = None,
    skip_bad: bool = False,
) -> Dataset:
    """Every trial under ``root`` with a file for each of ``sensors``, aligned and resampled (module doc).

    Each gap-free piece of a trial is one recording at ``resample_rate_hz``; the pieces of a
    trial share a split group. A trial missing one of the sensor files is left out with a
    warning; a root with none is a :class:`DatasetError`.
    """
    root = Path(root)
    if len(set(sensors)) != len(sensors) or not set(sensors) <= set(SENSORS):
        raise DatasetError(f"{root}: --sensors {','.join(sensors)}: name each of {', '.join(SENSORS)} at most once")
    found, other = find_trials(root)
    trials = [t for t in found if all(s in t.files for s in sensors)]
    if not trials:
        raise DatasetError(
            f"{root}: no trial with {' and '.join(sensors)} files named <CODE>_<sensor>_<subject>_<trial>.txt "
            f"({len(found)} trial(s) with other sensors)"
        )
    if len(trials) < len(found):
        missing = next(t for t in found if t not in trials)
        log.warning(
            "%s: %d trial(s) lack a %s file and are left out (e.g. %s)",
            root,
            len(found) - len(trials),
            " or ".join(sensors),
            next(iter(missing.files.values())),
        )
    codes = {t.code for t in trials}
    misfiled = [t for t in trials if t.folder != t.code and t.folder in codes]  # MobiFall: sub21/FALLS/FOL/SDL_*
    if misfiled:
        log.warning(
            "%s: %d trial(s) sit in another code's folder and are labelled by their file names (e.g. %s)",
            root,
            len(misfiled),
            relative(str(next(iter(misfiled[0].files.values()))), root),
        )
    if other:
        log.warning("%s: %d .txt file(s) not named <CODE>_<acc|gyro>_<subject>_<trial>.txt are left out", root, other)
    log.info(
        "%s: reading %d trial(s) (%d files); resampling each from its own timestamps (%s) onto %g Hz by linear "
        "interpolation, splitting at gaps over %g s",
        root,
        len(trials),
        len(trials) * len(sensors),
        timestamp_unit,
        resample_rate_hz,
        max_gap_s,
    )
    from tqdm import tqdm

    started = time.perf_counter()
    report = ResampleReport()
    recordings: list[Recording] = []
    groups: list[str] = []
    skipped: dict[str, int] = {}
    reasons: Counter[str] = Counter()
    empty: list[str] = []
    files: list[Path] = []
    rates: dict[str, list[float]] = defaultdict(list)
    bar = tqdm(trials, desc=NAME, unit="trial", leave=False, disable=None if len(trials) >= 20 else True)
    for trial in bar:
        streams = []
        for sensor in sensors:
            path = trial.files[sensor]
            read = read_timed_file(path, skip_bad=skip_bad)
            files.append(path)
            if not len(read.stamps) and not skip_bad:
                raise DatasetError(
                    f"{path}: no data rows (timestamp, x, y, z) after its header; --skip-bad leaves it out"
                )
            if read.skipped:
                skipped[relative(str(path), root)] = read.skipped
                reasons.update(read.reasons)
            unit = detect_time_unit(read.stamps) if timestamp_unit == "auto" else timestamp_unit
            span = float(read.stamps[-1] - read.stamps[0]) * TIME_UNITS[unit] if len(read.stamps) > 1 and unit else 0.0
            if span > 0:
                rates[sensor].append((len(read.stamps) - 1) / span)
            streams.append((read.stamps, read.values))
        try:
            out = align(streams, resample_rate_hz, max_gap_s=max_gap_s, unit=timestamp_unit)
        except ValueError as exc:
            raise DatasetError(f"{trial.files[sensors[0]]}: {exc}") from None
        report.add(out.report)
        source = str(trial.files[sensors[0]])
        if not out.segments:
            empty.append(source)
        if label_from == "category" and not trial.category:
            raise DatasetError(
                f"{trial.files[sensors[0]]}: --label-from category needs <category>/<CODE>/ folders under --data "
                "(FALLS/FOL/...)"
            )
        label = trial.category if label_from == "category" else trial.code
        group = f"{label}|{trial.subject}|{trial.trial}|{source}"
        for i, segment in enumerate(out.segments):
            name = source if len(out.segments) == 1 else f"{source} (piece {i + 1} of {len(out.segments)})"
            recordings.append(Recording(segment.samples, label, name, trial.subject, resample_rate_hz))
            groups.append(group)
    bar.close()
    if empty:
        log.warning(
            "%s: %d trial(s) gave no samples (sensor files without a common span), e.g. %s", root, len(empty), empty[0]
        )
    own = ", ".join(f"{s} {np.median(r):.0f} Hz" for s, r in rates.items() if r)
    log.info(
        "%s: %d trial(s) read in %.1f s (own rates about %s): %s",
        root,
        len(trials),
        time.perf_counter() - started,
        own or "unknown",
        report.summary(),
    )
    width = WIDTH * len(sensors)
    default_names = tuple(f"{s}_{axis}" for s in sensors for axis in "xyz")
    ds = scaled_dataset(
        recordings=recordings,
        channels=channel_names(channels or default_names, width, root),
        rate=resample_rate_hz,
        scale=scale,
        offset=offset,
        units=units if units is not None else ", ".join(f"{UNITS[s]} ({s})" for s in sensors),
        files=files,
        where=root,
        hash_root=root,
        name=NAME,
        root=root,
        skipped=skipped,
        format=NAME,
        path=root,
        split_groups=groups,
        bad_line_reasons=dict(reasons),
    )
    ds.resampling = summarise(
        report,
        from_hz=float(np.median([np.median(r) for r in rates.values() if r])) if any(rates.values()) else None,
        to_hz=resample_rate_hz,
        unit=timestamp_unit,
        max_gap_s=max_gap_s,
    )
    ds.resampling["from_hz_per_sensor"] = {s: round(float(np.median(r)), 3) for s, r in rates.items() if r}
    ds.resampling["recordings_without_samples"] = len(empty)
    return ds
