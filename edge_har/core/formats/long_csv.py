"""Format ``csv``: one long CSV with a header; consecutive rows of one (label, subject, trial) form a
recording. Any file that is not a ``.ts`` file is taken for one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import AliasChoices, Field

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError, FormatOptions
from edge_har.core.formats.common import (
    check_rate,
    offset_field,
    sample_rate_field,
    scale_field,
    scaled_dataset,
    skip_bad_field,
    units_field,
)
from edge_har.core.formats.timestamps import (
    TimedRecording,
    check_options,
    max_gap_field,
    resample_rate_field,
    resample_recordings,
    timestamp_unit_field,
)
from edge_har.core.recordings import Recording, RecordingError, read_long_csv


def _column(flag: str, keyword: str, description: str) -> Any:
    return Field(
        None,
        min_length=1,
        validation_alias=AliasChoices(flag, keyword),
        description=description,
        json_schema_extra={"metavar": "NAME"},
    )


class CsvOptions(FormatOptions):
    """Options of one long CSV."""

    label_column: Optional[str] = _column(
        "label_column", "label_col", "the column holding the activity label, e.g. --label-column activity"
    )
    channels: Optional[tuple[str, ...]] = Field(
        None,
        min_length=1,
        validation_alias=AliasChoices("channels", "channel_cols"),
        description="the channel columns to use, in this order (default: every numeric column but "
        "label/subject/timestamp/trial), e.g. --channels ax,ay,az",
        json_schema_extra={"metavar": "A,B,C", "cli_type": "names"},
    )
    subject_column: Optional[str] = _column(
        "subject_column",
        "subject_col",
        "the column holding the subject id (a new subject starts a new recording), e.g. --subject-column user",
    )
    timestamp_column: Optional[str] = _column(
        "timestamp_column",
        "timestamp_col",
        "a time column, left out of the channels: each recording is interpolated by it onto a regular rate "
        "(--resample-rate; default --sample-rate, else 1 / its median step), split at gaps (--max-gap), "
        "e.g. --timestamp-column t",
    )
    timestamp_unit: Optional[Literal["auto", "s", "ms", "us", "ns"]] = timestamp_unit_field()
    resample_rate: Optional[float] = resample_rate_field()
    max_gap: Optional[float] = max_gap_field()
    trial_column: Optional[str] = Field(
        None,
        min_length=1,
        validation_alias=AliasChoices("trial_column", "trial_col"),
        description="a recording / trial id column; a new value starts a new recording, so back-to-back trials "
        "of one label and subject do not merge (and no window spans two), e.g. --trial-column trial",
        json_schema_extra={"metavar": "NAME", "aliases": ["--recording-column"]},
    )
    sample_rate: Optional[float] = sample_rate_field(
        "rate the recordings were made at (Hz), unless --timestamp-column gives it, e.g. --sample-rate 50"
    )
    scale: Optional[tuple[float, ...]] = scale_field()
    offset: Optional[tuple[float, ...]] = offset_field()
    units: Optional[str] = units_field()
    skip_bad: bool = skip_bad_field()


class CsvFormat(DataFormat):
    name = "csv"
    options = CsvOptions
    detects = "a file that is not .ts"
    needs = "file"
    required = {"label_column": "a long CSV needs --label-column (and --sample-rate or --timestamp-column)"}
    hint = "; --subject-regex and --include-model-trials are for a folder of recordings"
    columns_are_channels = True

    def detect(self, path: Path) -> bool:
        return path.is_file()

    def load(self, path: Path, options: CsvOptions) -> Dataset:
        assert options.label_column is not None
        check_options(options, path)
        return load_long_csv(
            path,
            label_col=options.label_column,
            channel_cols=options.channels,
            subject_col=options.subject_column,
            timestamp_col=options.timestamp_column,
            trial_col=options.trial_column,
            sample_rate_hz=options.sample_rate,
            scale=options.scale or (1.0,),
            offset=options.offset or (0.0,),
            units=options.units or "",
            skip_bad=options.skip_bad,
            timing=options if options.timestamp_column is not None else None,
        )


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
    timing: CsvOptions | None = None,
) -> Dataset:
    """One CSV with a header; consecutive rows with the same (label, subject, trial) form one recording.

    Channels are ``channel_cols`` in that order, or every other numeric column
    in file order. The rate is ``sample_rate_hz``, else 1 / the median step of
    ``timestamp_col`` (in seconds). With ``timing`` (its ``timestamp_column`` set) each recording
    is resampled by its stamps instead (:mod:`edge_har.core.formats.timestamps`).
    """
    path = Path(path)
    if not label_col:
        raise DatasetError(f"{path}: a long CSV needs --label-column")
    if sample_rate_hz is not None:
        check_rate(sample_rate_hz, path, "")
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
            rate_from_stamps=timing is None,
        )
    except RecordingError as exc:
        raise DatasetError(str(exc)) from exc
    fields: dict[str, Any] = {}
    recordings = table.recordings
    if timing is not None and table.stamps:
        items = [
            TimedRecording(Recording(r.samples, r.label, r.source, r.subject), t, r.source)
            for r, t in zip(table.recordings, table.stamps)
        ]
        out = resample_recordings(items, timing, nominal_rate_hz=sample_rate_hz, where=path)
        recordings = out.recordings
        for r in recordings:
            r.sample_rate_hz = out.rate_hz
        fields = {"resampling": out.summary, "resolved_options": out.resolved}
        if len(set(out.groups)) < len(out.groups):
            fields["split_groups"] = out.groups
    rate = check_rate(
        sample_rate_hz if not fields and sample_rate_hz else recordings[0].sample_rate_hz,
        path,
        "pass --sample-rate, or --timestamp-column naming a time column in seconds",
    )
    return scaled_dataset(
        recordings=recordings,
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
        bad_line_reasons=dict(table.reasons),
        **fields,
    )
