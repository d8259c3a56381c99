"""Format ``hapt``: UCI HAPT read in place, a preset of interval labels.

J. L. Reyes-Ortiz, L. Oneto, A. Sama, X. Parra, D. Anguita, "Transition-Aware Human Activity
Recognition Using Smartphones", Neurocomputing 171 (2016) 754-767; its README.txt:
``RawData/acc_expXX_userYY.txt``, ``gyro_...``, ``labels.txt`` (experiment, user, activity
id, start, end: 1-based inclusive sample indices at 50 Hz) and ``activity_labels.txt``. Its
predefined split is the UCI HAR protocol's (test subjects 2, 4, 9, 10, 12, 13, 18, 20, 24).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError, FormatOptions
from edge_har.core.formats.common import file_list_hash, labels_of, unlabelled_class_field
from edge_har.core.formats.segments import Segment, read_joined, read_label_names, read_rows, segments_to_recordings
from edge_har.core.recordings import Recording

log = logging.getLogger(__name__)

# UCI HAPT (version 2.1): 50 Hz, accelerometer in g, gyroscope in rad/s.
HAPT_NAME = "hapt"
HAPT_RATE_HZ = 50.0
HAPT_SENSORS = ("acc", "gyro")
HAPT_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
HAPT_UNITS = "g (acc), rad/s (gyro)"
HAPT_FOLDER = "HAPT Data Set"
HAPT_FILE = re.compile(r"^acc_exp(\d+)_user(\d+)\.txt$")
# The UCI HAR protocol's test volunteers (the other 21 train), as subject ids of this loader.
UCI_HAR_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
HAPT_BASIC = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")


class HaptOptions(FormatOptions):
    """HAPT fixes rate, channels and labels."""

    unlabelled_class: Optional[str] = unlabelled_class_field()


class HaptFormat(DataFormat):
    name = HAPT_NAME
    options = HaptOptions
    detects = "a folder with RawData/labels.txt and acc_expXX_userYY.txt (50 Hz, acc + gyro, 12 activities)"
    needs = "folder"
    hint = "; the HAPT preset fixes rate, channels and labels (use --format intervals to set them)"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and hapt_root(path) is not None

    def load(self, path: Path, options: HaptOptions) -> Dataset:
        return load_hapt(path, unlabelled_class=options.unlabelled_class)


def hapt_root(path: str | Path) -> Path | None:
    """The folder holding ``RawData/labels.txt`` of HAPT at or just under ``path`` (or ``path`` itself being RawData)."""
    path = Path(path)
    candidates = [path, path / HAPT_FOLDER, path.parent]
    if path.is_dir():
        candidates += sorted(p for p in path.iterdir() if p.is_dir())
    for c in candidates:
        raw = c / "RawData"
        if (raw / "labels.txt").is_file() and any(HAPT_FILE.match(f.name) for f in raw.iterdir()):
            if c == path.parent and path.name != "RawData":
                continue
            return c
    return None


def load_hapt(root: str | Path, *, unlabelled_class: str | None = None) -> Dataset:
    """UCI HAPT read in place: every labelled segment of every experiment, accelerometer + gyroscope.

    Channels acc_x..acc_z (g) and gyro_x..gyro_z (rad/s), 50 Hz; subject
    ``s<user>`` (s1..s30); the 12 activity names of activity_labels.txt. The
    predefined split is UCI HAR's: subjects 2, 4, 9, 10, 12, 13, 18, 20, 24 test,
    the other 21 train. Pick the six basic activities with ``--classes`` and
    the accelerometer alone with ``--columns acc_x,acc_y,acc_z``.
    """
    given = Path(root)
    base = hapt_root(given)
    if base is None:
        raise DatasetError(f"{given}: not the UCI HAPT layout (no RawData/labels.txt with acc_expXX_userYY.txt files)")
    raw = base / "RawData"
    labels_file = raw / "labels.txt"
    names_file = base / "activity_labels.txt"
    if not names_file.is_file():
        names_file = raw / "activity_labels.txt"
    names = read_label_names(names_file) if names_file.is_file() else None
    if names is None:
        log.warning("%s: no activity_labels.txt; classes are named by their numbers", base)
    segments: list[Segment] = []
    for lineno, fields in read_rows(labels_file):
        if len(fields) != 5 or not all(f.isdigit() for f in fields):
            raise DatasetError(
                f"{labels_file}:{lineno}: expected 'experiment user activity start end' (5 whole numbers), "
                f"got {' '.join(fields)!r}"
            )
        exp, user, act, start, end = (int(f) for f in fields)
        label = names.get(str(act)) if names is not None else str(act)
        if label is None:
            raise DatasetError(
                f"{labels_file}:{lineno}: activity {act} is not in {names_file} (ids {', '.join(sorted(names or {}))})"
            )
        if end < start:
            raise DatasetError(f"{labels_file}:{lineno}: end {end} is before start {start}")
        segments.append(Segment(f"exp{exp:02d}_user{user:02d}", label, start, end, f"s{user}", lineno))
    by_recording: dict[str, list[Segment]] = {}
    for seg in segments:
        by_recording.setdefault(seg.recording, []).append(seg)
    recordings: list[Recording] = []
    read = [labels_file] + ([names_file] if names is not None else [])
    left_out = 0
    for rec_id, segs in sorted(by_recording.items()):
        paths = [raw / f"{sensor}_{rec_id}.txt" for sensor in HAPT_SENSORS]
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"{labels_file}:{segs[0].line}: experiment {rec_id}: no file {p}")
        samples = read_joined(paths)
        if samples.shape[1] != len(HAPT_CHANNELS):
            raise DatasetError(f"{paths[0]}: {samples.shape[1]} columns in all, HAPT has 3 per sensor file")
        read += paths
        pieces, dropped = segments_to_recordings(
            samples,
            segs,
            source=str(paths[0]),
            subject=segs[0].subject,
            rate=HAPT_RATE_HZ,
            units="samples",
            first_sample=1,
            annotations=labels_file,
            unlabelled_class=unlabelled_class,
        )
        recordings += pieces
        left_out += dropped
    if left_out:
        log.info("%s: %d unlabelled sample(s) left out", labels_file, left_out)
    test = {f"s{s}" for s in UCI_HAR_TEST_SUBJECTS}
    predefined = {r.source: ("test" if r.subject in test else "train") for r in recordings}
    return Dataset(
        name=HAPT_NAME,
        root=base,
        recordings=recordings,
        labels=labels_of(recordings, base),
        channels=HAPT_CHANNELS,
        sample_rate_hz=HAPT_RATE_HZ,
        units=HAPT_UNITS,
        file_list_sha256=file_list_hash(read, base),
        n_files=len(read),
        predefined_split=predefined,
        format="hapt",
        path=given,
    )
