"""Data-set loaders for training, all taking a path, and the training windows cut from them.

Layouts:

* a folder of recordings, ``<root>/<Class>/<recording>.txt|.csv`` (``load_folder``),
  with the preset ``load_hmp`` for the UCI HMP wrist-accelerometer set
  (B. Bruno, F. Mastrogiovanni, A. Sgorbissa, T. Vernazza, R. Zaccaria: "Analysis
  of human behavior recognition algorithms based on acceleration data", ICRA 2013,
  pp. 1602-1607; its README.txt and MANUAL.txt document the layout and coding);
* one long CSV with a header (``load_long_csv``);
* UCI HAR, "Human Activity Recognition Using Smartphones" (D. Anguita, A. Ghio,
  L. Oneto, X. Parra, J. L. Reyes-Ortiz, ESANN 2013), in its original extracted
  layout (``load_uci_har``).

The file readers live in ``edge_har.core.recordings`` because the device's replay
source reads the same files. Windows go through ``edge_har.core.preprocessing``, the
code the device runs. No TensorFlow here (numpy only): ``edge-har evaluate`` and
the benchmarks use this module on a machine with only the device extra.
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

from edge_har.core.errors import EdgeHarError
from edge_har.core.preprocessing import Preprocessing, PreprocessingError, recording_to_windows
from edge_har.core.recordings import (
    MODEL_SUFFIX,
    Recording,
    RecordingError,
    list_folder_files,
    load_folder_recordings,
    read_long_csv,
    read_samples_result,
)

log = logging.getLogger(__name__)

FORMATS = ("auto", "hmp", "folder", "csv", "uci-har", "intervals", "hapt", "names", "ts")

# UCI HMP: 3-axis wrist accelerometer, 32 Hz, codes 0..63 for -1.5 g..+1.5 g
# (MANUAL.txt 4.2: real_val = -1.5g + (coded_val/63)*3g). File names end in the
# volunteer's id, "[gN]" (g = f or m); *_MODEL trials add "_k" (walk-f1_3.txt).
# Any "<letters><digits>" id is accepted, so HMP-style sets of one's own (s1, p12) work too.
HMP_NAME = "hmp"
HMP_RATE_HZ = 32.0
HMP_CHANNELS = ("x", "y", "z")
HMP_SCALE = (3.0 / 63.0,)
HMP_OFFSET = (-1.5,)
HMP_UNITS = "g"
HMP_SUBJECT_REGEX = r"-([A-Za-z]+\d+)(?:_\d+)?\.txt$"
HMP_FILE_PATTERN = re.compile(r"^Accelerometer-\d{4}(?:-\d{2}){5}-.+-[A-Za-z]+\d+(?:_\d+)?\.txt$")

# UCI HAR: 50 Hz, already cut into 128-sample windows (2.56 s, 50% overlap).
# Channel order of every window (and of the bundle's input), fixed here:
UCI_HAR_NAME = "uci-har"
UCI_HAR_RATE_HZ = 50.0
UCI_HAR_WINDOW = 128
UCI_HAR_SIGNALS = (
    "body_acc_x", "body_acc_y", "body_acc_z",
    "body_gyro_x", "body_gyro_y", "body_gyro_z",
    "total_acc_x", "total_acc_y", "total_acc_z",
)  # fmt: skip
UCI_HAR_UNITS = "g (body_acc, total_acc), rad/s (body_gyro)"
UCI_HAR_SIDES = ("train", "test")

# The command-line flag of each loader keyword, for messages.
FLAGS = {
    "subject_regex": "--subject-regex",
    "sample_rate_hz": "--sample-rate",
    "channels": "--channels",
    "channel_cols": "--channels",
    "scale": "--scale",
    "offset": "--offset",
    "units": "--units",
    "label_col": "--label-column",
    "subject_col": "--subject-column",
    "timestamp_col": "--timestamp-column",
    "trial_col": "--trial-column",
    "include_model": "--include-model-trials",
    "skip_bad": "--skip-bad",
    "name": "name",
    "annotations": "--intervals",
    "files": "--recording-files",
    "interval_units": "--interval-units",
    "first_sample": "--first-sample",
    "unlabelled_class": "--unlabelled-class",
    "interval_overlap": "--interval-overlap",
    "label_names": "--label-names",
    "name_regex": "--name-regex",
}
# Options every layout takes: applied to the loaded data set (see ``refine``).
COMMON_OPTIONS = ("columns", "label_map", "classes")
OPTIONS = {
    "hmp": ("include_model", "skip_bad", "subject_regex"),
    "folder": (
        "sample_rate_hz",
        "subject_regex",
        "channels",
        "scale",
        "offset",
        "units",
        "include_model",
        "skip_bad",
        "name",
    ),
    "csv": (
        "label_col",
        "channel_cols",
        "subject_col",
        "timestamp_col",
        "trial_col",
        "sample_rate_hz",
        "scale",
        "offset",
        "units",
        "skip_bad",
    ),
    "uci-har": ("skip_bad",),
    "intervals": (
        "annotations",
        "sample_rate_hz",
        "files",
        "interval_units",
        "first_sample",
        "unlabelled_class",
        "interval_overlap",
        "label_names",
        "subject_regex",
        "channels",
        "scale",
        "offset",
        "units",
        "name",
    ),
    "hapt": ("unlabelled_class",),
    "names": ("name_regex", "sample_rate_hz", "channels", "scale", "offset", "units", "skip_bad", "name"),
    "ts": ("sample_rate_hz", "channels", "scale", "offset", "units", "name"),
}


class DatasetError(EdgeHarError, ValueError):
    """A data set that cannot be used as given; the message names the file or the option."""


@dataclass
class Dataset:
    """Recordings plus what a bundle must know about them (rate, channels, scaling, provenance).

    ``split_groups`` (one key per recording, or None for "every recording its
    own group") names recordings that must land on the same side of a split:
    UCI HAR's overlapping windows of one run, an HMP model trial and the trial
    it was cut from.
    """

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
    path: Path | None = None  # what the user pointed at (the CSV file itself for a long CSV)
    split_groups: list[str] | None = None
    columns: list[int] | None = None  # the file columns --columns picked, in channel order
    kept_classes: list[str] | None = None  # --classes
    label_map: dict[str, str | None] | None = None  # --label-map: original class -> label (None: left out)
    header: tuple[str, ...] | None = None  # the column names every file's header line gives (folder layout)

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def group_keys(self) -> list[str]:
        """The split group of each recording (its own source when there are no groups)."""
        if self.split_groups is None:
            return [r.source for r in self.recordings]
        return list(self.split_groups)

    def describe(self) -> dict[str, Any]:
        """Provenance for bundle.json: enough to know, and to find again, the data that made a model."""
        subjects = sorted({r.subject for r in self.recordings if r.subject})
        out: dict[str, Any] = {
            "name": self.name,
            "format": self.format,
            "path": str(Path(self.path or self.root).resolve()),
            "root": str(Path(self.root).resolve()),
            "n_recordings": len(self.recordings),
            "n_files": self.n_files,
            "n_samples": int(sum(len(r) for r in self.recordings)),
            "file_list_sha256": self.file_list_sha256,
            "recordings_per_class": dict(sorted(Counter(r.label for r in self.recordings).items())),
            "subjects": subjects,
            "recordings_without_subject": sum(1 for r in self.recordings if not r.subject),
            "sample_rate_hz": self.sample_rate_hz,
            "channels": list(self.channels),
            "scale": list(self.scale),
            "offset": list(self.offset),
            "units": self.units,
            "skipped_lines": int(sum(self.skipped.values())),
            "skipped_per_file": dict(sorted(self.skipped.items())),
        }
        if self.native_window is not None:
            out["native_window"] = self.native_window
        if self.predefined_split is not None:
            out["predefined_split"] = dict(sorted(Counter(self.predefined_split.values()).items()))
        if self.split_groups is not None:
            out["split_groups"] = len(set(self.split_groups))
        if self.columns is not None:
            out["columns"] = list(self.columns)
        if self.kept_classes is not None:
            out["classes"] = list(self.kept_classes)
        if self.label_map is not None:
            out["label_map"] = dict(self.label_map)
        return out


def file_list_hash(files: Sequence[Path], root: Path) -> str:
    """sha256 over the sorted relative paths and sizes of the files read.

    Cheap on any size of data set, yet it changes when a file is added,
    removed, renamed or changes length, which is what provenance needs.
    """
    entries = sorted(f"{Path(f).relative_to(root).as_posix()}\t{Path(f).stat().st_size}\n" for f in files)
    return hashlib.sha256("".join(entries).encode()).hexdigest()


def _labels(recordings: list[Recording], where: Path) -> list[str]:
    if not recordings:
        raise DatasetError(f"{where}: no recordings")
    return sorted({r.label for r in recordings})


def _channels(channels: Sequence[str] | None, width: int, where: Path) -> tuple[str, ...]:
    if channels is None:
        return tuple(f"ch{i}" for i in range(width))
    if len(channels) != width:
        raise DatasetError(
            f"{where}: --channels names {len(channels)} channel(s) ({', '.join(channels)}) but the files have {width} columns"
        )
    if len(set(channels)) != len(channels):
        raise DatasetError(f"{where}: --channels repeats a name: {', '.join(channels)}")
    return tuple(channels)


def _per_channel(values: Sequence[float], n: int, flag: str, where: Path) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.atleast_1d(values))
    if len(out) not in (1, n):
        raise DatasetError(f"{where}: {flag} has {len(out)} values; give one for all channels or one per channel ({n})")
    if not all(np.isfinite(out)):
        raise DatasetError(f"{where}: {flag} values must be finite numbers, got {list(out)}")
    return out


def scaled_dataset(
    *,
    recordings: list[Recording],
    channels: tuple[str, ...],
    rate: float,
    scale: Sequence[float],
    offset: Sequence[float],
    units: str | None,
    files: Sequence[Path],
    where: Path,
    hash_root: Path,
    **fields: Any,
) -> Dataset:
    """A :class:`Dataset` of a layout that takes ``--scale`` / ``--offset``.

    Labels, per-channel scale and offset, and the file-list hash are worked out the same way for
    every such layout, so each error names the same kind of place (``where``) in all of them.
    """
    return Dataset(
        recordings=recordings,
        labels=_labels(recordings, where),
        channels=channels,
        sample_rate_hz=rate,
        scale=_per_channel(scale, len(channels), "--scale", where),
        offset=_per_channel(offset, len(channels), "--offset", where),
        units=units or "",
        file_list_sha256=file_list_hash(files, hash_root),
        n_files=len(files),
        **fields,
    )


def _rate(rate: float | None, where: Path, hint: str) -> float:
    if rate is None:
        raise DatasetError(f"{where}: no sample rate; {hint}")
    if not np.isfinite(rate) or rate <= 0:
        raise DatasetError(f"{where}: --sample-rate must be > 0 Hz, got {rate}")
    return float(rate)


# ------------------------------------------------------------------ folder of recordings and HMP


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
    """``<root>/<Class>/<recording>.txt|.csv``: one recording per file, class = folder name.

    Columns are channels in ``channels`` order (default names ch0, ch1, ...);
    ``subject_regex``'s first group takes a subject id from each file name.
    ``*_MODEL`` folders are skipped unless ``include_model``.
    """
    root = Path(root)
    rate = _rate(sample_rate_hz, root, "a folder of recordings needs --sample-rate (Hz)")
    warn_folder_shape(root)
    skipped: dict[str, int] = {}
    headers: dict[str, tuple[str, ...] | None] = {}
    try:
        files = [f for _, f in list_folder_files(root, include_model=include_model)]
        recordings = load_folder_recordings(
            root,
            subject_regex=subject_regex,
            include_model=include_model,
            skip_bad=skip_bad,
            sample_rate_hz=rate,
            skipped=skipped,
            headers=headers,
        )
    except RecordingError as exc:
        raise DatasetError(str(exc)) from exc
    names = _channels(channels, recordings[0].samples.shape[1], root)
    found = set(headers.values())
    header = found.pop() if len(found) == 1 else None
    return scaled_dataset(
        recordings=recordings,
        channels=names,
        rate=rate,
        scale=scale,
        offset=offset,
        units=units,
        files=files,
        where=root,
        hash_root=root,
        name=name or root.resolve().name,
        root=root,
        skipped={_relative(k, root): v for k, v in skipped.items()},
        format="folder",
        path=root,
        split_groups=_model_trial_groups(recordings) if include_model else None,
        header=header if header is not None and len(header) == len(names) else None,
    )


# A folder name that reads as a person rather than an activity: s01, subject_3, user12, P7, 104.
SUBJECT_LIKE = re.compile(
    r"^(?:s|sub|subj|subject|u|usr|user|p|part|participant|person|id|v|vol|volunteer)?[-_ ]?\d+$", re.IGNORECASE
)
NAMES_HINT = (
    "for one folder per subject with the activity in each file name, use --name-regex, e.g. "
    r"'(?P<subject>[^/]+)/(?P<label>[A-Za-z]+)[^/]*\.(txt|csv)$'"
)


def warn_folder_shape(root: Path) -> None:
    """Warn when a folder of class folders looks like something else: classes named like subject ids
    (a folder of subject folders silently becomes a data set whose classes are people), or class
    folders holding sub-folders (whose files this layout does not read)."""
    if not root.is_dir():
        return
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        return
    subject_like = [p.name for p in folders if SUBJECT_LIKE.match(p.name)]
    if len(subject_like) * 2 >= len(folders):
        log.warning(
            "%s: %d of %d class folder name(s) look like subject ids (%s); each would be a class. %s",
            root,
            len(subject_like),
            len(folders),
            ", ".join(subject_like[:4]) + (", ..." if len(subject_like) > 4 else ""),
            NAMES_HINT,
        )
    nested = [(p, sorted(q.name for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))) for p in folders]
    nested = [(p, subs) for p, subs in nested if subs]
    if nested:
        folder, subs = nested[0]
        log.warning(
            "%s: %d class folder(s) hold sub-folders (e.g. %s/: %s) whose files are not read; %s",
            root,
            len(nested),
            folder.name,
            ", ".join(subs[:3]) + (", ..." if len(subs) > 3 else ""),
            NAMES_HINT,
        )


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _model_trial_groups(recordings: list[Recording]) -> list[str] | None:
    """Keep each ``*_MODEL`` trial on the split side of the regular trial it repeats.

    In HMP every model trial is a copy of, or an excerpt from, the regular
    trial of the same name (``Walk_MODEL/...-walk-f1_3.txt`` is cut from
    ``Walk/...-walk-f1.txt``); letting them fall on different sides would put
    test data into training.
    """
    regular = {
        (r.label, Path(r.source).name): r.source
        for r in recordings
        if not Path(r.source).parent.name.endswith(MODEL_SUFFIX)
    }
    groups, tied = [], 0
    for r in recordings:
        path = Path(r.source)
        key = r.source
        if path.parent.name.endswith(MODEL_SUFFIX):
            base = re.sub(r"_\d+(\.[^.]+)$", r"\1", path.name)
            if (r.label, base) in regular:
                key, tied = regular[(r.label, base)], tied + 1
        groups.append(key)
    if tied:
        log.info(
            "%d model trial(s) repeat or excerpt a regular trial; each stays on its trial's side of the split", tied
        )
    return groups if tied else None


def load_hmp(
    root: str | Path, *, include_model: bool = False, skip_bad: bool = False, subject_regex: str | None = None
) -> Dataset:
    """The UCI HMP wrist-accelerometer set in its original layout (its README.txt and MANUAL.txt).

    Channels x, y, z (x toward the hand, y to the left, z out of the back of
    the hand: MANUAL.txt 3); 32 Hz; value = code * 3/63 - 1.5 in g; subject =
    the volunteer id at the end of the file name (f1, m3, ...). The ``*_MODEL``
    trials repeat regular trials, so they are left out unless ``include_model``.
    """
    ds = load_folder(
        root,
        sample_rate_hz=HMP_RATE_HZ,
        subject_regex=subject_regex or HMP_SUBJECT_REGEX,
        channels=HMP_CHANNELS,
        scale=HMP_SCALE,
        offset=HMP_OFFSET,
        units=HMP_UNITS,
        include_model=include_model,
        skip_bad=skip_bad,
        name=HMP_NAME,
    )
    ds.format = "hmp"
    return ds


# ------------------------------------------------------------------ one long CSV


def load_long_csv(
    path: str | Path,
    *,
    label_col: str,
    channel_cols: Sequence[str] | None = None,
    subject_col: str | None = None,
    timestamp_col: str | None = None,
    trial_col: str | None = None,
    sample_rate_hz: float | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    skip_bad: bool = False,
) -> Dataset:
    """One CSV with a header; consecutive rows with the same (label, subject, trial) form one recording.

    Channels are ``channel_cols`` in that order, or every other numeric column
    in file order. The rate is ``sample_rate_hz``, else 1 / the median step of
    ``timestamp_col`` (in seconds).
    """
    path = Path(path)
    if not label_col:
        raise DatasetError(f"{path}: a long CSV needs --label-column")
    if sample_rate_hz is not None:
        _rate(sample_rate_hz, path, "")
    try:
        table = read_long_csv(
            path,
            label_col=label_col,
            channel_cols=channel_cols,
            subject_col=subject_col,
            timestamp_col=timestamp_col,
            skip_bad=skip_bad,
            sample_rate_hz=sample_rate_hz,
            trial_col=trial_col,
        )
    except RecordingError as exc:
        raise DatasetError(str(exc)) from exc
    rate = _rate(
        sample_rate_hz or table.recordings[0].sample_rate_hz,
        path,
        "pass --sample-rate, or --timestamp-column naming a time column in seconds",
    )
    return scaled_dataset(
        recordings=table.recordings,
        channels=table.channels,
        rate=rate,
        scale=scale,
        offset=offset,
        units=units,
        files=[path],
        where=path,
        hash_root=path.parent,
        name=path.stem,
        root=path.parent,
        skipped={path.name: table.skipped} if table.skipped else {},
        format="csv",
        path=path,
    )


# ------------------------------------------------------------------ UCI HAR


def _uci_har_root(root: Path) -> Path:
    nested = root / "UCI HAR Dataset"
    return nested if not (root / "train").is_dir() and nested.is_dir() else root


def _activity_names(root: Path, files: list[Path]) -> dict[int, str]:
    labels_file = root / "activity_labels.txt"
    if not labels_file.is_file():
        log.warning("%s: no activity_labels.txt; classes are named by their numbers", root)
        return {}
    names: dict[int, str] = {}
    for lineno, line in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{labels_file}:{lineno}: expected '<id> <NAME>', got {line.strip()!r}")
        names[int(parts[0])] = parts[1]
    files.append(labels_file)
    return names


def _read_uci_column_file(path: Path, skip_bad: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing {what} file (not the UCI HAR layout?)")
    try:
        result = read_samples_result(path, n_channels=1, skip_bad=skip_bad)
    except RecordingError as exc:
        raise DatasetError(str(exc)) from exc
    values = result.samples[:, 0]
    fractional = np.flatnonzero(values != np.round(values))
    if len(fractional):
        line = int(result.line_numbers[fractional[0]])
        raise DatasetError(f"{path}:{line}: {what} must be a whole number, got {values[fractional[0]]}")
    return values.astype(np.int64), result.line_numbers


def load_uci_har(root: str | Path, *, skip_bad: bool = False) -> Dataset:
    """UCI HAR in its extracted layout; each 128-sample window is one recording.

    ``root`` is the "UCI HAR Dataset" folder (or the folder holding it). Reads
    ``<side>/Inertial Signals/<signal>_<side>.txt`` for the nine signals in
    ``UCI_HAR_SIGNALS`` order, ``y_<side>.txt`` and ``subject_<side>.txt``, for
    side train and test, and ``activity_labels.txt`` for class names. The
    train/test partition (by subject) becomes ``predefined_split``. Windows
    overlap by half, so consecutive windows of one subject and activity form
    one split group: a split never separates them.
    A row is line N of all eleven files of its side; with ``skip_bad``, a line
    bad in any of them drops that window everywhere.
    """
    root = _uci_har_root(Path(root))
    files: list[Path] = []
    names = _activity_names(root, files)
    recordings: list[Recording] = []
    predefined: dict[str, str] = {}
    groups: list[str] = []
    skipped: dict[str, int] = {}
    for side in UCI_HAR_SIDES:
        folder = root / side / "Inertial Signals"
        if not folder.is_dir():
            raise DatasetError(f"{root}: missing '{side}/Inertial Signals' (not the UCI HAR layout)")
        y, y_lines = _read_uci_column_file(root / side / f"y_{side}.txt", skip_bad, "activity label")
        subjects, s_lines = _read_uci_column_file(root / side / f"subject_{side}.txt", skip_bad, "subject")
        files += [root / side / f"y_{side}.txt", root / side / f"subject_{side}.txt"]
        signals: list[tuple[np.ndarray, np.ndarray]] = []
        for signal in UCI_HAR_SIGNALS:
            f = folder / f"{signal}_{side}.txt"
            if not f.is_file():
                raise DatasetError(f"{f}: missing signal file (UCI HAR has {', '.join(UCI_HAR_SIGNALS)})")
            try:
                result = read_samples_result(f, n_channels=UCI_HAR_WINDOW, skip_bad=skip_bad)
            except RecordingError as exc:
                raise DatasetError(f"{exc} (UCI HAR rows are windows of {UCI_HAR_WINDOW} samples)") from exc
            signals.append((result.samples, result.line_numbers))
            files.append(f)
        line_sets = [y_lines, s_lines] + [lines for _, lines in signals]
        if not skip_bad:
            counts = {len(lines) for lines in line_sets}
            if len(counts) != 1:
                detail = ", ".join(
                    f"{n}: {len(lines)}"
                    for n, lines in zip(
                        [f"y_{side}.txt", f"subject_{side}.txt"] + [f"{s}_{side}.txt" for s in UCI_HAR_SIGNALS],
                        line_sets,
                    )
                )
                raise DatasetError(f"{root / side}: the files differ in row count ({detail}); each row is one window")
        common = line_sets[0]
        for lines in line_sets[1:]:
            common = np.intersect1d(common, lines)
        dropped = int(max(len(lines) for lines in line_sets) - len(common))
        if dropped:
            skipped[f"{side}/Inertial Signals"] = dropped
            log.warning(
                "%s: %d window(s) dropped: a line of theirs was malformed in at least one file", root / side, dropped
            )

        def pick(values: np.ndarray, lines: np.ndarray) -> np.ndarray:
            return values[np.searchsorted(lines, common)]

        y_c, s_c = pick(y, y_lines), pick(subjects, s_lines)
        unknown = sorted(set(y_c.tolist()) - set(names)) if names else []
        if unknown:
            line = int(common[np.flatnonzero(y_c == unknown[0])[0]])
            raise DatasetError(
                f"{root / side / f'y_{side}.txt'}:{line}: activity {unknown[0]} is not in activity_labels.txt "
                f"(ids {', '.join(map(str, sorted(names)))})"
            )
        windows = np.stack([pick(values, lines) for values, lines in signals], axis=-1)  # (n, 128, 9)
        run = 0
        for k, line in enumerate(common):
            label = names.get(int(y_c[k]), str(int(y_c[k])))
            subject = f"s{int(s_c[k])}"
            if k and (y_c[k] != y_c[k - 1] or s_c[k] != s_c[k - 1] or line != common[k - 1] + 1):
                run += 1
            source = f"{folder}:line {int(line)}"
            recordings.append(Recording(windows[k], label, source, subject, UCI_HAR_RATE_HZ))
            predefined[source] = side
            groups.append(f"{side}:run {run}")
    return Dataset(
        name=UCI_HAR_NAME,
        root=root,
        recordings=recordings,
        labels=_labels(recordings, root),
        channels=UCI_HAR_SIGNALS,
        sample_rate_hz=UCI_HAR_RATE_HZ,
        units=UCI_HAR_UNITS,
        file_list_sha256=file_list_hash(files, root),
        n_files=len(files),
        native_window=UCI_HAR_WINDOW,
        predefined_split=predefined,
        skipped=skipped,
        format="uci-har",
        path=root,
        split_groups=groups,
    )


# ------------------------------------------------------------------ format detection and dispatch


def detect_format(path: str | Path) -> str:
    """ts for a .ts file or a folder of *_TRAIN.ts; csv for another file; uci-har for a folder with
    train/Inertial Signals; hapt for HAPT's RawData/labels.txt; hmp for HMP-named files; else folder."""
    from edge_har.convert.intervals import hapt_root
    from edge_har.convert.ts_format import is_ts

    path = Path(path)
    if path.exists() and is_ts(path):
        return "ts"
    if path.is_file():
        return "csv"
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    if (_uci_har_root(path) / "train" / "Inertial Signals").is_dir():
        return "uci-har"
    if hapt_root(path) is not None:
        return "hapt"
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(HMP_FILE_PATTERN.match(f.name) for f in sub.iterdir() if f.is_file()):
            return "hmp"
    return "folder"


def load_dataset(path: str | Path, *, format: str = "auto", **options: Any) -> Dataset:
    """Load ``path`` as ``format`` (auto-detected by default; see ``detect_format``).

    ``options`` are the chosen loader's keywords; None (and False for the
    switches) means "not given". An option the format does not take is an
    error naming its command-line flag, not a silent no-op.
    """
    path = Path(path)
    if format not in FORMATS:
        raise DatasetError(f"--format {format!r}: unknown; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    options = {k: v for k, v in options.items() if v is not None and v is not False}
    if format == "auto" and "annotations" in options:
        fmt = "intervals"
    elif format == "auto" and "name_regex" in options:
        fmt = "names"
    else:
        fmt = detect_format(path) if format == "auto" else format
    how = "detected" if format == "auto" else "given"
    common = {k: options.pop(k) for k in COMMON_OPTIONS if k in options}
    rename = None
    if "columns" in common and fmt == "csv":
        # A long CSV picks its channel columns by header name already: --columns is that, --channels renames.
        rename = options.pop("channels", None)
        options["channels"] = tuple(common.pop("columns"))
    elif "columns" in common:
        # The loader reads every column under its default names; ``refine`` picks and names them.
        for key in ("channels", "scale", "offset"):
            if key in options and key in OPTIONS.get(fmt, ()):  # (a preset that fixes them still refuses them)
                common[key] = options.pop(key)
    ds = _load(path, fmt, how, options)
    if rename is not None:
        ds.channels = _channels(rename, len(ds.channels), path)
    return refine(ds, **common)


def _load(path: Path, fmt: str, how: str, options: dict[str, Any]) -> Dataset:
    if fmt == "csv" and "channels" in options:
        options["channel_cols"] = options.pop("channels")
    extra = [k for k in options if k not in OPTIONS[fmt]]
    if extra:
        flags = ", ".join(FLAGS.get(k, k) for k in extra)
        hint = {
            "hmp": "; the HMP preset fixes rate, channels and scaling (use --format folder to set them)",
            "uci-har": "; UCI HAR's rate, channels and labels come from its own files",
            "folder": "; --label-column, --subject-column and --timestamp-column are for a long CSV",
            "csv": "; --subject-regex and --include-model-trials are for a folder of recordings",
            "intervals": "; --intervals and its --interval-* options describe the segments",
            "hapt": "; the HAPT preset fixes rate, channels and labels (use --format intervals to set them)",
            "names": "; labels, subjects and trials come from --name-regex",
            "ts": "; a .ts file holds labelled windows, one case a line",
        }[fmt]
        raise DatasetError(f"{path}: {flags} does not apply to format {fmt} ({how}){hint}")
    if fmt in ("hmp", "folder", "uci-har", "intervals", "hapt", "names") and not path.is_dir():
        raise DatasetError(f"{path}: format {fmt} needs a folder, this is a file")
    if fmt == "csv" and not path.is_file():
        raise DatasetError(f"{path}: format csv needs a file, this is a folder")
    if fmt == "hmp":
        return load_hmp(path, **options)
    if fmt == "folder":
        if "sample_rate_hz" not in options:
            raise DatasetError(f"{path}: a folder of recordings (format folder, {how}) needs --sample-rate (Hz)")
        return load_folder(path, **options)
    if fmt == "csv":
        if "label_col" not in options:
            raise DatasetError(f"{path}: a long CSV needs --label-column (and --sample-rate or --timestamp-column)")
        return load_long_csv(path, **options)
    if fmt == "intervals":
        from edge_har.convert.intervals import load_intervals

        if "annotations" not in options:
            raise DatasetError(f"{path}: interval labels (format intervals) need --intervals FILE, the segments")
        if "sample_rate_hz" not in options:
            raise DatasetError(f"{path}: interval labels (format intervals) need --sample-rate (Hz)")
        return load_intervals(path, **options)
    if fmt == "hapt":
        from edge_har.convert.intervals import load_hapt

        return load_hapt(path, **options)
    if fmt in ("names", "ts") and "sample_rate_hz" not in options:
        what = "labels from file names need" if fmt == "names" else ".ts files record no rate; they need"
        raise DatasetError(f"{path}: {what} --sample-rate (Hz) (format {fmt}, {how})")
    if fmt == "names":
        from edge_har.convert.filenames import load_named_files

        if "name_regex" not in options:
            raise DatasetError(f"{path}: format names needs --name-regex with a (?P<label>...) group")
        return load_named_files(path, **options)
    if fmt == "ts":
        from edge_har.convert.ts_format import load_ts

        return load_ts(path, **options)
    return load_uci_har(path, **options)


def _column_index(token: str, names: Sequence[str], where: Path) -> int:
    if token in names:
        return list(names).index(token)
    if token.isdigit():
        if int(token) >= len(names):
            raise DatasetError(
                f"{where}: --columns {token}: the recordings have {len(names)} columns (0..{len(names) - 1})"
            )
        return int(token)
    raise DatasetError(f"{where}: --columns {token!r}: no such column; the columns are {', '.join(names)} (or 0..)")


def refine(
    ds: Dataset,
    *,
    columns: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    label_map: str | Path | Sequence[tuple[str, str]] | None = None,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """Options any layout takes, applied to the loaded data set.

    ``columns`` picks columns by 0-based index or by name (the layout's channel
    names, the files' header line, or ``channels`` when it names every column); ``channels`` then names
    either every column of the file or just the chosen ones, and ``scale`` /
    ``offset`` are per chosen column. ``label_map`` (see :func:`parse_label_map`)
    renames and merges classes, then ``classes`` keeps only those (mapped) classes.
    """
    where = Path(ds.path or ds.root)
    if columns:
        width = len(ds.channels)
        names = tuple(ds.channels)
        if channels is not None and len(channels) == width:
            names = _channels(channels, width, where)
        elif channels is None and ds.header is not None and len(set(ds.header)) == width:
            names = ds.header  # the files' own header line names the columns --columns picks from
        idx = [_column_index(str(c), names, where) for c in columns]
        if len(set(idx)) != len(idx):
            raise DatasetError(f"{where}: --columns picks a column twice: {', '.join(map(str, columns))}")
        chosen = tuple(names[i] for i in idx)
        if channels is not None and len(channels) != width:
            if len(channels) != len(idx):
                raise DatasetError(
                    f"{where}: --channels names {len(channels)} channel(s); give one per column of the file ({width}) "
                    f"or one per --columns entry ({len(idx)})"
                )
            chosen = _channels(channels, len(idx), where)
        if scale is None:
            scale = [ds.scale[i] for i in idx] if len(ds.scale) == width > 1 else ds.scale
        if offset is None:
            offset = [ds.offset[i] for i in idx] if len(ds.offset) == width > 1 else ds.offset
        for r in ds.recordings:
            r.samples = np.ascontiguousarray(r.samples[:, idx])
        ds.channels = chosen
        ds.scale = _per_channel(scale, len(idx), "--scale", where)
        ds.offset = _per_channel(offset, len(idx), "--offset", where)
        ds.columns = [int(i) for i in idx]
    if label_map is not None:
        rules = parse_label_map(label_map) if isinstance(label_map, (str, Path)) else list(label_map)
        apply_label_map(ds, rules, where)
    if classes:
        known = set(ds.labels)
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise DatasetError(
                f"{where}: --classes {', '.join(unknown)}: not a class of this data set ({', '.join(ds.labels)})"
            )
        keep = [i for i, r in enumerate(ds.recordings) if r.label in set(classes)]
        _keep_recordings(ds, keep)
        ds.labels = sorted(set(classes))
        ds.kept_classes = list(ds.labels)
    return ds


DROP = "-"


def parse_label_map(spec: str | Path) -> list[tuple[str, str]]:
    """(pattern, label) rules from a file of ``PATTERN=LABEL`` lines (``#`` comments) or from
    ``'F*=fall,D*=adl'``. Patterns are shell-style (``*``, ``?``, ``[..]``), matched to the whole,
    case-sensitive class name; the first matching rule wins; label ``-`` leaves the class out."""
    path = Path(spec)
    if path.is_file():
        where = str(path)
        try:
            lines = list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: cannot read the label map: {exc}") from exc
        entries = [(f"{where}:{n}", line.split("#", 1)[0].strip()) for n, line in lines]
    else:
        where = f"--label-map {str(spec)!r}"
        entries = [(where, part.strip()) for part in str(spec).split(",")]
    rules: list[tuple[str, str]] = []
    for at, text in entries:
        if not text:
            continue
        pattern, sep, label = (t.strip() for t in text.partition("="))
        if not sep or not pattern or not label:
            raise DatasetError(
                f"{at}: expected PATTERN=LABEL (e.g. F*=fall, or Walk*=- to leave classes out), got {text!r}"
            )
        rules.append((pattern, label))
    if not rules:
        raise DatasetError(f"{where}: no PATTERN=LABEL rules")
    return rules


def apply_label_map(ds: Dataset, rules: Sequence[tuple[str, str]], where: Path | str) -> None:
    """Rename / merge / leave out classes by ``rules``; records the mapping in ``ds.label_map``."""
    from fnmatch import fnmatchcase

    mapping: dict[str, str | None] = {}
    used: set[int] = set()
    for original in ds.labels:
        target: str | None = original
        for k, (pattern, label) in enumerate(rules):
            if fnmatchcase(original, pattern):
                target = None if label == DROP else label
                used.add(k)
                break
        mapping[original] = target
    unused = [f"{p}={lbl}" for k, (p, lbl) in enumerate(rules) if k not in used]
    if unused:
        log.warning(
            "%s: label map rule(s) %s match no class (classes: %s)", where, ", ".join(unused), ", ".join(ds.labels)
        )
    keep = [i for i, r in enumerate(ds.recordings) if mapping[r.label] is not None]
    if not keep:
        raise DatasetError(
            f"{where}: the label map leaves no class ({', '.join(f'{k}->{v}' for k, v in mapping.items())})"
        )
    _keep_recordings(ds, keep)
    for r in ds.recordings:
        r.label = str(mapping[r.label])
    ds.labels = sorted({str(v) for v in mapping.values() if v is not None})
    ds.label_map = mapping
    merged = [f"{v} <- {', '.join(k for k, t in mapping.items() if t == v)}" for v in ds.labels]
    dropped = [k for k, v in mapping.items() if v is None]
    log.info("label map: %s%s", "; ".join(merged), f"; left out: {', '.join(dropped)}" if dropped else "")


def _keep_recordings(ds: Dataset, keep: Sequence[int]) -> None:
    """Keep only these recordings, with their split groups and predefined sides."""
    if ds.split_groups is not None:
        ds.split_groups = [ds.split_groups[i] for i in keep]
    ds.recordings = [ds.recordings[i] for i in keep]
    if ds.predefined_split is not None:
        sources = {r.source for r in ds.recordings}
        ds.predefined_split = {k: v for k, v in ds.predefined_split.items() if k in sources}


# ------------------------------------------------------------------ windows


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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|ms|samples?)?\s*$", re.IGNORECASE)


def parse_duration(text: str | int, sample_rate_hz: float) -> int:
    """Samples for --window/--stride: "96" (samples), "3s" / "3.0s" (seconds), "500ms"; rounded to samples."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"expected a number of samples (96) or a duration (3s, 500ms), got {text!r}")
    value, unit = float(match.group(1)), (match.group(2) or "").lower()
    if unit in ("", "sample", "samples"):
        if value != int(value):
            raise ValueError(f"{text!r}: a number of samples must be whole (for seconds write {value:g}s)")
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
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(","))
    if not names or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names without empty entries, got {text!r}")
    return names


def _rate_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in Hz, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a rate > 0 Hz, got {text!r}")
    return value


def add_dataset_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The data set options of every subcommand that takes --data (convert, evaluate, bench)."""
    g = parser.add_argument_group(
        "data set",
        "--data is a folder <root>/<Class>/<recording>.txt|.csv (UCI HMP is auto-detected and needs no other "
        "option), one long CSV with a header (needs --label-column), an extracted 'UCI HAR Dataset' folder, "
        "recordings plus an annotation file of labelled segments (--intervals; UCI HAPT is auto-detected), "
        "a folder tree whose file names carry the labels (--name-regex), or a UEA/UCR .ts file.",
    )
    g.add_argument(
        "--data",
        type=Path,
        required=required,
        metavar="PATH",
        help="the data set (a folder, a CSV or .ts file, 'UCI HAR Dataset', the HAPT folder); it is read in "
        "place, never copied, e.g. --data ../shared/data/hmp/HMP",
    )
    g.add_argument(
        "--format",
        "--layout",
        dest="format",
        type=str,
        default="auto",
        choices=FORMATS,
        help="layout of --data. auto: a .ts file (or a folder of *_TRAIN.ts) is ts, another file is csv, "
        "a folder with train/Inertial Signals is uci-har, one with RawData/labels.txt and acc_expXX_userYY.txt is "
        "hapt (50 Hz, acc + gyro, 12 activities), a folder of Accelerometer-*-<id>.txt files is hmp (32 Hz, "
        "x/y/z, code*3/63-1.5 g), --intervals makes it intervals and --name-regex names, any other folder is "
        "folder (default: %(default)s), e.g. --format folder to set HMP's rate and scaling yourself",
    )
    g.add_argument(
        "--name-regex",
        type=str,
        default=None,
        metavar="REGEX",
        help="labels from file names (implies --format names): searched in each file's path under --data, "
        "with named groups label (required), subject and trial, for one folder per subject, e.g. "
        r"--name-regex '(?P<subject>s\d+)/(?P<label>[a-z]+)_(?P<trial>\d+)\.csv$'",
    )
    g.add_argument(
        "--subject-regex",
        type=str,
        default=None,
        metavar="REGEX",
        help="folder layouts: regex searched in each file name; its first group (or whole match) is the "
        r"subject id, e.g. '(s\d+)\.txt$' (write --subject-regex=-... for one that starts with '-'; "
        "hmp default: the volunteer id at the end, f1, m3, ...)",
    )
    g.add_argument(
        "--sample-rate",
        type=_rate_arg,
        default=None,
        metavar="HZ",
        help="rate the recordings were made at; required for formats folder, intervals, names and ts, and for "
        "csv unless --timestamp-column gives it, e.g. --sample-rate 50",
    )
    g.add_argument(
        "--channels",
        type=_names,
        default=None,
        metavar="A,B,C",
        help="folder, intervals, names, ts: names of the file's columns, in order (default ch0, ch1, ...; with "
        "--columns: of every column or of the chosen ones); csv: the channel columns to use, in this order "
        "(default: every numeric column but label/subject/timestamp/trial), e.g. --channels ax,ay,az",
    )
    g.add_argument(
        "--scale",
        type=_floats,
        default=None,
        metavar="S[,S...]",
        help="value scaling, physical = raw * scale + offset: one value or one per channel (default 1), "
        "e.g. --scale 0.000598 (an MPU-6050's 16-bit counts at +-2 g to g)",
    )
    g.add_argument(
        "--offset",
        type=_floats,
        default=None,
        metavar="O[,O...]",
        help="value offset, see --scale (default 0), e.g. --scale 0.047619 --offset -1.5 (HMP's 0..63 codes)",
    )
    g.add_argument(
        "--units",
        type=str,
        default=None,
        help="unit of the scaled values, recorded in the bundle, e.g. --units g (or m/s^2)",
    )
    g.add_argument(
        "--label-column",
        type=str,
        default=None,
        metavar="NAME",
        help="csv: the column holding the activity label, e.g. --label-column activity",
    )
    g.add_argument(
        "--subject-column",
        type=str,
        default=None,
        metavar="NAME",
        help="csv: the column holding the subject id (a new subject starts a new recording), e.g. --subject-column user",
    )
    g.add_argument(
        "--timestamp-column",
        type=str,
        default=None,
        metavar="NAME",
        help="csv: a time column in seconds; without --sample-rate the rate is 1 / its median step, "
        "e.g. --timestamp-column t",
    )
    g.add_argument(
        "--trial-column",
        "--recording-column",
        dest="trial_column",
        type=str,
        default=None,
        metavar="NAME",
        help="csv: a recording / trial id column; a new value starts a new recording, so back-to-back trials "
        "of one label and subject do not merge (and no window spans two), e.g. --trial-column trial",
    )
    g.add_argument(
        "--include-model-trials",
        action="store_true",
        help="folder/hmp: also read the *_MODEL folders as their class (HMP's model trials repeat "
        "regular trials and are kept on their trial's side of the split), e.g. --data HMP --include-model-trials",
    )
    g.add_argument(
        "--columns",
        type=_names,
        default=None,
        metavar="C,...",
        help="any layout: the columns to use, in this order, by 0-based index or name, e.g. --columns 0,1,2 or "
        "--columns acc_x,acc_y,acc_z (HAPT's accelerometer alone); --channels then names every column of the "
        "file or just these, and --scale/--offset are per chosen column",
    )
    g.add_argument(
        "--classes",
        type=_names,
        default=None,
        metavar="NAME,...",
        help="any layout: keep only these classes, e.g. HAPT's six basic activities "
        "--classes WALKING,WALKING_UPSTAIRS,WALKING_DOWNSTAIRS,SITTING,STANDING,LAYING",
    )
    g.add_argument(
        "--label-map",
        type=str,
        default=None,
        metavar="RULES|FILE",
        help="any layout: rename or merge classes before training, e.g. --label-map 'F*=fall,D*=adl' "
        "(shell patterns, first match wins, '-' leaves a class out: --label-map '*_TO_*=-'), or a file of "
        "PATTERN=LABEL lines; the model predicts the merged names and bundle.json records the map",
    )
    i = parser.add_argument_group(
        "interval labels",
        "Recordings under --data plus an annotation file of labelled segments (recording, label, start, end "
        "[, subject]; a header names the columns, or they come in that order). Each labelled stretch becomes "
        "one recording; unlabelled samples are left out. Example: --data logs/ --intervals logs/labels.csv "
        "--recording-files '{recording}_acc.csv,{recording}_gyro.csv' --sample-rate 50 --interval-units seconds. "
        "UCI HAPT (RawData/labels.txt, acc_expXX_userYY.txt, gyro_...) is detected and needs none of these.",
    )
    i.add_argument(
        "--intervals",
        type=Path,
        default=None,
        metavar="FILE",
        help="the annotation file of segments (implies --format intervals), e.g. --intervals labels.csv",
    )
    i.add_argument(
        "--recording-files",
        type=_names,
        default=None,
        metavar="PATTERN,...",
        help="the file(s) of one recording relative to --data, {recording} standing for the annotation's "
        "recording column; several (one per sensor) are joined by row, e.g. "
        "'RawData/acc_{recording}.txt,RawData/gyro_{recording}.txt' (default: {recording}, the column is the file)",
    )
    i.add_argument(
        "--interval-units",
        type=str,
        choices=("samples", "seconds"),
        default=None,
        help="segment bounds are sample indices, both inclusive (default), or seconds, start <= t < end; "
        "e.g. --interval-units seconds",
    )
    i.add_argument(
        "--first-sample",
        type=int,
        choices=(0, 1),
        default=None,
        help="index of a recording's first sample in the annotation file (default 0; HAPT's is 1), e.g. --first-sample 1",
    )
    i.add_argument(
        "--unlabelled-class",
        type=str,
        default=None,
        metavar="NAME",
        help="make the samples outside every segment a class of this name instead of leaving them out, "
        "e.g. --unlabelled-class other",
    )
    i.add_argument(
        "--interval-overlap",
        type=str,
        choices=("error", "drop"),
        default=None,
        help="segments of different labels that overlap: an error naming both lines (default), or drop: "
        "the contested samples belong to neither, e.g. --interval-overlap drop",
    )
    i.add_argument(
        "--label-names",
        type=Path,
        default=None,
        metavar="FILE",
        help="'<id> <name>' lines naming the annotation's numeric labels, e.g. --label-names activity_labels.txt",
    )
    g.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip malformed lines (text in a number column, wrong column count) with a warning and a "
        "count (recorded in bundle.json), instead of stopping at the first with its file and line; not for "
        "intervals, whose segments index rows, e.g. --data logs/ --sample-rate 50 --skip-bad",
    )


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    """Load the data set the options of ``add_dataset_arguments`` describe."""
    options = {
        "subject_regex": getattr(args, "subject_regex", None),
        "sample_rate_hz": getattr(args, "sample_rate", None),
        "channels": getattr(args, "channels", None),  # load_dataset passes them on as channel_cols for a CSV
        "scale": getattr(args, "scale", None),
        "offset": getattr(args, "offset", None),
        "units": getattr(args, "units", None),
        "label_col": getattr(args, "label_column", None),
        "subject_col": getattr(args, "subject_column", None),
        "timestamp_col": getattr(args, "timestamp_column", None),
        "trial_col": getattr(args, "trial_column", None),
        "include_model": getattr(args, "include_model_trials", False),
        "skip_bad": getattr(args, "skip_bad", False),
        "columns": getattr(args, "columns", None),
        "classes": getattr(args, "classes", None),
        "label_map": getattr(args, "label_map", None),
        "annotations": getattr(args, "intervals", None),
        "files": getattr(args, "recording_files", None),
        "interval_units": getattr(args, "interval_units", None),
        "first_sample": getattr(args, "first_sample", None),
        "unlabelled_class": getattr(args, "unlabelled_class", None),
        "interval_overlap": getattr(args, "interval_overlap", None),
        "label_names": getattr(args, "label_names", None),
        "name_regex": getattr(args, "name_regex", None),
    }
    return load_dataset(args.data, format=getattr(args, "format", "auto") or "auto", **options)
