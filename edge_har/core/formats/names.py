"""Format ``names``: a folder tree of recordings whose paths carry the label, subject and trial.

Many sets are stored one folder per subject, with the activity in each file's
name (``s03/walk_2.csv``, ``SA01/D07_R03.txt``), not as class folders. Rather than
have users build class folders of links, ``load_named_files`` matches one regular
expression against each file's path relative to the root, and takes the class
from its named group ``label``, the subject from ``subject`` and the trial from
``trial`` (both optional). Recordings of one (label, subject, trial) stay on one
side of a split (``Dataset.split_groups``), for sets that cut a trial into files.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydantic import Field

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError
from edge_har.core.formats.common import (
    ScalingOptions,
    channel_names,
    check_rate,
    relative,
    sample_rate_field,
    scaled_dataset,
    skip_bad_field,
)
from edge_har.core.formats.timestamps import (
    TimedRecording,
    TimestampOptions,
    check_options,
    resample_recordings,
    split_table,
    time_column,
)
from edge_har.core.recordings import Recording, RecordingError, read_samples_result

log = logging.getLogger(__name__)

GROUPS = ("label", "subject", "trial")


class NamesOptions(ScalingOptions, TimestampOptions):
    """Options of a folder tree labelled by file names."""

    name_regex: Optional[str] = Field(
        None,
        min_length=1,
        description="labels from file names (implies --format names): searched in each file's path under --data, "
        "with named groups label (required), subject and trial, for one folder per subject, e.g. "
        r"--name-regex '(?P<subject>s\d+)/(?P<label>[a-z]+)_(?P<trial>\d+)\.csv$'",
        json_schema_extra={"metavar": "REGEX"},
    )
    sample_rate: Optional[float] = sample_rate_field()
    skip_bad: bool = skip_bad_field()


class NamesFormat(DataFormat):
    name = "names"
    options = NamesOptions
    needs = "folder"
    selected_by = "name_regex"
    required = {
        "sample_rate": "labels from file names need --sample-rate (Hz) or --timestamp-column (format names, {how})",
        "name_regex": "format names needs --name-regex with a (?P<label>...) group",
    }
    required_unless = {"sample_rate": "timestamp_column"}
    hint = "; labels, subjects and trials come from --name-regex"

    def detect(self, path: Path) -> bool:
        return False  # picked by --name-regex

    def load(self, path: Path, options: NamesOptions) -> Dataset:
        assert options.name_regex is not None
        check_options(options, path)
        return load_named_files(
            path,
            name_regex=options.name_regex,
            sample_rate_hz=options.sample_rate,
            channels=options.channels,
            scale=options.scale or (1.0,),
            offset=options.offset or (0.0,),
            units=options.units or "",
            skip_bad=options.skip_bad,
            timing=options if options.timestamp_column is not None else None,
        )


def compile_name_regex(name_regex: str) -> re.Pattern[str]:
    """The pattern, checked: valid, with a ``label`` group, and no named groups beyond label/subject/trial."""
    try:
        pattern = re.compile(name_regex)
    except re.error as exc:
        raise DatasetError(f"--name-regex {name_regex!r} is not a valid regular expression: {exc}") from None
    if "label" not in pattern.groupindex:
        raise DatasetError(
            f"--name-regex {name_regex!r} has no (?P<label>...) group; e.g. "
            r"'(?P<subject>[^/]+)/(?P<label>[a-z]+)_(?P<trial>\d+)\.csv$'"
        )
    unknown = sorted(set(pattern.groupindex) - set(GROUPS))
    if unknown:
        raise DatasetError(
            f"--name-regex {name_regex!r}: unknown named group(s) {', '.join(unknown)}; use {', '.join(GROUPS)}"
        )
    return pattern


def list_recording_files(root: Path, extensions: Sequence[str]) -> list[Path]:
    """Every recording file under ``root`` (any depth), sorted; hidden files and folders left out."""
    exts = tuple(e.lower() for e in extensions)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in exts
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_named_files(
    root: str | Path,
    *,
    name_regex: str,
    sample_rate_hz: float | None,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    skip_bad: bool = False,
    name: str | None = None,
    extensions: Sequence[str] = (".txt", ".csv"),
    timing: TimestampOptions | None = None,
) -> Dataset:
    """Every ``.txt``/``.csv`` under ``root`` whose relative path (``/``-separated) ``name_regex`` matches.

    The regex is searched (not anchored: add ``^``/``$`` as needed). Files it does
    not match are left out with one warning (a README, a notes file); none
    matching is an error showing a file it was tried on. With ``timing`` (a timestamp column) each
    file is resampled by its stamps (:mod:`edge_har.core.formats.timestamps`).
    """
    root = Path(root)
    timed = timing is not None and timing.timestamp_column is not None
    rate: float | None = None
    if not timed or sample_rate_hz is not None:
        rate = check_rate(sample_rate_hz, root, "labels from file names need --sample-rate (Hz)")
    pattern = compile_name_regex(name_regex)
    files = list_recording_files(root, extensions)
    if not files:
        raise DatasetError(f"{root}: no {'/'.join(extensions)} files under it")
    recordings: list[Recording] = []
    groups: list[str] = []
    read: list[Path] = []
    unmatched: list[str] = []
    skipped: dict[str, int] = {}
    first: tuple[Path, int] | None = None
    tables: list[tuple[np.ndarray, tuple[str, ...] | None]] = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        match = pattern.search(rel)
        if match is None or not match.group("label"):
            unmatched.append(rel)
            continue
        try:
            result = read_samples_result(f, skip_bad=skip_bad, dtype=np.float64 if timed else np.float32)
        except RecordingError as exc:
            raise DatasetError(str(exc)) from exc
        width = result.samples.shape[1]
        if first is None:
            first = (f, width)
        elif width != first[1]:
            raise DatasetError(
                f"{f}: {width} columns, but {first[0]} has {first[1]}; every recording needs the same channels"
            )
        found = {g: (match.group(g) if g in pattern.groupindex else None) for g in GROUPS}
        if result.skipped:
            skipped[relative(str(f), root)] = result.skipped
        recordings.append(Recording(result.samples, str(found["label"]), str(f), found["subject"] or None, rate))
        tables.append((result.samples, result.header))
        groups.append(f"{found['label']}|{found['subject']}|{found['trial']}" if found["trial"] else str(f))
        read.append(f)
    if not recordings:
        raise DatasetError(
            f"{root}: --name-regex {name_regex!r} matches none of the {len(files)} file path(s), e.g. {unmatched[0]!r} "
            "(it is searched in each path relative to --data, with '/' between folders)"
        )
    if unmatched:
        log.warning(
            "%s: --name-regex matches %d of %d file path(s); left out, e.g. %s",
            root,
            len(read),
            len(files),
            unmatched[0],
        )
    assert first is not None
    width = first[1]
    resampling, resolved = None, {}
    if timed:
        assert timing is not None and timing.timestamp_column is not None
        items = []
        for r, group, (table, header) in zip(recordings, groups, tables):
            index = time_column(timing.timestamp_column, header, width, r.source)
            t, values = split_table(table, index)
            items.append(TimedRecording(Recording(values, r.label, r.source, r.subject), t, group))
        out = resample_recordings(items, timing, nominal_rate_hz=rate, where=root)
        recordings, groups, rate, width = out.recordings, out.groups, out.rate_hz, width - 1
        resampling, resolved = out.summary, out.resolved
    assert rate is not None
    names = channel_names(channels, width, root)
    tied = len(groups) - len(set(groups))
    return scaled_dataset(
        recordings=recordings,
        channels=names,
        rate=rate,
        scale=scale,
        offset=offset,
        units=units,
        files=read,
        where=root,
        hash_root=root,
        name=name or root.resolve().name,
        root=root,
        skipped=skipped,
        format="names",
        path=root,
        split_groups=groups if tied else None,
        resampling=resampling,
        resolved_options=resolved,
    )
