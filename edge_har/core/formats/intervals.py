"""Format ``intervals``: recordings plus an annotation file of labelled segments.

Many public sets (UCI HAPT, PAMAP2-style logs, anything labelled from video) keep
each session as one long recording and put the labels in a separate file of
segments: ``recording, label, start, end``. This format reads that layout in
place and returns a ``Dataset`` whose recordings are the labelled segments, so
the rest of ``convert`` (split, windows, training) sees what it always sees: one
label per recording, windows never crossing a segment boundary. The annotation
file and the cutting are :mod:`edge_har.core.formats.segments`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import AliasChoices, Field

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError
from edge_har.core.formats.common import (
    ScalingOptions,
    channel_names,
    check_rate,
    sample_rate_field,
    scaled_dataset,
    subject_regex_field,
    unlabelled_class_field,
)
from edge_har.core.formats.segments import (
    OVERLAP,
    PLACEHOLDER,
    UNITS,
    Segment,
    read_annotations,
    read_joined,
    read_label_names,
    segments_to_recordings,
)
from edge_har.core.recordings import Recording, compile_subject_regex, subject_from_name

log = logging.getLogger(__name__)


class IntervalOptions(ScalingOptions):
    """Options of recordings labelled by an annotation file of segments."""

    intervals: Optional[Path] = Field(
        None,
        validation_alias=AliasChoices("intervals", "annotations"),
        description="the annotation file of segments (implies --format intervals), e.g. --intervals labels.csv",
        json_schema_extra={"metavar": "FILE"},
    )
    sample_rate: Optional[float] = sample_rate_field()
    recording_files: Optional[tuple[str, ...]] = Field(
        None,
        min_length=1,
        validation_alias=AliasChoices("recording_files", "files"),
        description="the file(s) of one recording relative to --data, {recording} standing for the annotation's "
        "recording column; several (one per sensor) are joined by row, e.g. "
        "'RawData/acc_{recording}.txt,RawData/gyro_{recording}.txt' (default: {recording}, the column is the file)",
        json_schema_extra={"metavar": "PATTERN,...", "cli_type": "names"},
    )
    interval_units: Optional[Literal["samples", "seconds"]] = Field(
        None,
        description="segment bounds are sample indices, both inclusive (default), or seconds, start <= t < end; "
        "e.g. --interval-units seconds",
    )
    first_sample: Optional[Literal[0, 1]] = Field(
        None,
        description="index of a recording's first sample in the annotation file (default 0; HAPT's is 1), "
        "e.g. --first-sample 1",
    )
    unlabelled_class: Optional[str] = unlabelled_class_field()
    interval_overlap: Optional[Literal["error", "drop"]] = Field(
        None,
        description="segments of different labels that overlap: an error naming both lines (default), or drop: "
        "the contested samples belong to neither, e.g. --interval-overlap drop",
    )
    label_names: Optional[Path] = Field(
        None,
        description="'<id> <name>' lines naming the annotation's numeric labels, e.g. --label-names activity_labels.txt",
        json_schema_extra={"metavar": "FILE"},
    )
    subject_regex: Optional[str] = subject_regex_field()


class IntervalsFormat(DataFormat):
    name = "intervals"
    options = IntervalOptions
    needs = "folder"
    selected_by = "intervals"
    required = {
        "intervals": "interval labels (format intervals) need --intervals FILE, the segments",
        "sample_rate": "interval labels (format intervals) need --sample-rate (Hz)",
    }
    hint = "; --intervals and its --interval-* options describe the segments"
    defaults = {
        "recording_files": (PLACEHOLDER,),
        "interval_units": "samples",
        "first_sample": 0,
        "interval_overlap": "error",
    }
    help_group = (
        "interval labels",
        "Recordings under --data plus an annotation file of labelled segments (recording, label, start, end "
        "[, subject]; a header names the columns, or they come in that order). Each labelled stretch becomes "
        "one recording; unlabelled samples are left out. Example: --data logs/ --intervals logs/labels.csv "
        "--recording-files '{recording}_acc.csv,{recording}_gyro.csv' --sample-rate 50 --interval-units seconds. "
        "UCI HAPT (RawData/labels.txt, acc_expXX_userYY.txt, gyro_...) is detected and needs none of these.",
    )

    def detect(self, path: Path) -> bool:
        return False  # picked by --intervals

    def load(self, path: Path, options: IntervalOptions) -> Dataset:
        assert options.intervals is not None and options.sample_rate is not None
        kwargs: dict[str, Any] = {
            k: v
            for k, v in {
                "files": options.recording_files,
                "interval_units": options.interval_units,
                "first_sample": options.first_sample,
                "interval_overlap": options.interval_overlap,
            }.items()
            if v is not None
        }
        return load_intervals(
            path,
            annotations=options.intervals,
            sample_rate_hz=options.sample_rate,
            unlabelled_class=options.unlabelled_class,
            label_names=options.label_names,
            subject_regex=options.subject_regex,
            channels=options.channels,
            scale=options.scale or (1.0,),
            offset=options.offset or (0.0,),
            units=options.units or "",
            **kwargs,
        )


def load_intervals(
    root: str | Path,
    *,
    annotations: str | Path,
    sample_rate_hz: float,
    files: Sequence[str] = (PLACEHOLDER,),
    interval_units: str = "samples",
    first_sample: int = 0,
    unlabelled_class: str | None = None,
    interval_overlap: str = "error",
    label_names: str | Path | dict[str, str] | None = None,
    subject_regex: str | None = None,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    name: str | None = None,
) -> Dataset:
    """Recordings under ``root`` plus an annotation file of segments; one Recording per labelled stretch.

    ``files`` are paths relative to ``root`` with ``{recording}`` standing for
    the annotation's recording column (default: that column is the file); several
    are joined by row. Segment bounds are sample indices counted from
    ``first_sample``, both inclusive, or seconds (``interval_units="seconds"``:
    start <= t < end). A segment's subject is the annotation's subject column,
    else ``subject_regex`` searched in the recording id.
    """
    root = Path(root)
    annotations = Path(annotations)
    rate = check_rate(sample_rate_hz, root, "interval labels need --sample-rate (Hz)")
    if interval_units not in UNITS:
        raise DatasetError(f"--interval-units {interval_units!r}: choose one of {', '.join(UNITS)}")
    if interval_overlap not in OVERLAP:
        raise DatasetError(f"--interval-overlap {interval_overlap!r}: choose one of {', '.join(OVERLAP)}")
    if not files or any(PLACEHOLDER not in f for f in files):
        raise DatasetError(f"--recording-files {','.join(files)!r}: every pattern needs {PLACEHOLDER}")
    names = read_label_names(label_names) if isinstance(label_names, (str, Path)) else label_names
    segments = read_annotations(annotations, units=interval_units, label_names=names)
    pattern = compile_subject_regex(subject_regex)
    by_recording: dict[str, list[Segment]] = {}
    for seg in segments:
        by_recording.setdefault(seg.recording, []).append(seg)
    recordings: list[Recording] = []
    read: list[Path] = []
    left_out = 0
    width: tuple[Path, int] | None = None
    for rec_id, segs in by_recording.items():
        paths = [root / f.replace(PLACEHOLDER, rec_id) for f in files]
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"{annotations}:{segs[0].line}: recording {rec_id!r}: no file {p}")
        samples = read_joined(paths)
        if width is None:
            width = (paths[0], samples.shape[1])
        elif samples.shape[1] != width[1]:
            raise DatasetError(
                f"{paths[0]}: {samples.shape[1]} columns, but {width[0]} has {width[1]}; every recording needs the "
                "same channels"
            )
        read += paths
        subjects = {s.subject for s in segs}
        if len(subjects) > 1:
            raise DatasetError(
                f"{annotations}: recording {rec_id!r} has segments of several subjects ({', '.join(map(str, subjects))})"
            )
        subject = segs[0].subject or subject_from_name(pattern, rec_id)
        pieces, dropped = segments_to_recordings(
            samples,
            segs,
            source=str(paths[0]),
            subject=subject,
            rate=rate,
            units=interval_units,
            first_sample=first_sample,
            annotations=annotations,
            unlabelled_class=unlabelled_class,
            overlap=interval_overlap,
        )
        recordings += pieces
        left_out += dropped
    if left_out:
        log.info("%s: %d sample(s) outside every labelled segment (or contested) left out", annotations, left_out)
    if width is None or not recordings:
        raise DatasetError(f"{annotations}: no labelled samples")
    names_ = channel_names(channels, width[1], root)
    hashed = read + [annotations]
    hash_root = Path(common_root([root, annotations.parent]))
    return scaled_dataset(
        recordings=recordings,
        channels=names_,
        rate=rate,
        scale=scale,
        offset=offset,
        units=units,
        files=hashed,
        where=root,
        hash_root=hash_root,
        name=name or root.resolve().name,
        root=root,
        format="intervals",
        path=root,
    )


def common_root(paths: Sequence[Path]) -> str:
    return os.path.commonpath([str(Path(p).resolve()) for p in paths])
