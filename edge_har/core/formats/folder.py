"""Format ``folder``: ``<root>/<Class>/<recording>.txt|.csv``, one recording per file, class = folder name.

Columns are channels; the files record no rate, so ``--sample-rate`` is required. ``*_MODEL``
folders (HMP's model trials) are read only with ``--include-model-trials``, each kept on the
split side of the regular trial it repeats.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError
from edge_har.core.formats.common import (
    ScalingOptions,
    channel_names,
    check_rate,
    include_model_field,
    relative,
    sample_rate_field,
    scaled_dataset,
    skip_bad_field,
    subject_regex_field,
)
from edge_har.core.formats.timestamps import (
    TimedRecording,
    TimestampOptions,
    check_options,
    resample_recordings,
    split_table,
    time_column,
)
from edge_har.core.recordings import (
    MODEL_SUFFIX,
    Recording,
    RecordingError,
    list_folder_files,
    load_folder_recordings,
)

log = logging.getLogger(__name__)


class FolderOptions(ScalingOptions, TimestampOptions):
    """Options of a folder of class folders."""

    sample_rate: Optional[float] = sample_rate_field()
    subject_regex: Optional[str] = subject_regex_field()
    include_model_trials: bool = include_model_field()
    skip_bad: bool = skip_bad_field()


class FolderFormat(DataFormat):
    name = "folder"
    options = FolderOptions
    detects = "any other folder"
    needs = "folder"
    required = {
        "sample_rate": "a folder of recordings (format folder, {how}) needs --sample-rate (Hz) or --timestamp-column"
    }
    required_unless = {"sample_rate": "timestamp_column"}
    hint = "; --label-column and --subject-column are for a long CSV"

    def detect(self, path: Path) -> bool:
        return path.is_dir()

    def load(self, path: Path, options: FolderOptions) -> Dataset:
        check_options(options, path)
        return load_folder(
            path,
            sample_rate_hz=options.sample_rate,
            subject_regex=options.subject_regex,
            channels=options.channels,
            scale=options.scale or (1.0,),
            offset=options.offset or (0.0,),
            units=options.units or "",
            include_model=options.include_model_trials,
            skip_bad=options.skip_bad,
            timing=options if options.timestamp_column is not None else None,
        )


def load_folder(
    root: str | Path,
    *,
    sample_rate_hz: float | None,
    subject_regex: str | None = None,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    include_model: bool = False,
    skip_bad: bool = False,
    name: str | None = None,
    timing: TimestampOptions | None = None,
) -> Dataset:
    """``<root>/<Class>/<recording>.txt|.csv``: one recording per file, class = folder name.

    Columns are channels in ``channels`` order (default names ch0, ch1, ...);
    ``subject_regex``'s first group takes a subject id from each file name.
    ``*_MODEL`` folders are skipped unless ``include_model``. With ``timing`` (a timestamp column)
    each file is resampled by its stamps (:mod:`edge_har.core.formats.timestamps`).
    """
    root = Path(root)
    timed = timing is not None and timing.timestamp_column is not None
    rate: float | None = None
    if not timed or sample_rate_hz is not None:
        rate = check_rate(sample_rate_hz, root, "a folder of recordings needs --sample-rate (Hz)")
    warn_folder_shape(root)
    skipped: dict[str, int] = {}
    reasons: dict[str, int] = {}
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
            reasons=reasons,
            headers=headers,
            dtype=np.float64 if timed else np.float32,
        )
    except RecordingError as exc:
        raise DatasetError(str(exc)) from exc
    found = set(headers.values())
    header = found.pop() if len(found) == 1 else None
    groups = model_trial_groups(recordings) if include_model else None
    resampling, resolved = None, {}
    if timed:
        assert timing is not None and timing.timestamp_column is not None
        index = time_column(timing.timestamp_column, header, recordings[0].samples.shape[1], root)
        items = []
        for i, r in enumerate(recordings):
            stamps, values = split_table(r.samples, index)
            group = groups[i] if groups is not None else r.source
            items.append(TimedRecording(Recording(values, r.label, r.source, r.subject), stamps, group))
        out = resample_recordings(items, timing, nominal_rate_hz=rate, where=root)
        recordings, rate = out.recordings, out.rate_hz
        split = groups is not None or len(set(out.groups)) < len(out.groups)
        groups = out.groups if split else None
        header = tuple(h for j, h in enumerate(header) if j != index) if header is not None else None
        resampling, resolved = out.summary, out.resolved
    assert rate is not None
    names = channel_names(channels, recordings[0].samples.shape[1], root)
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
        skipped={relative(k, root): v for k, v in skipped.items()},
        format="folder",
        path=root,
        split_groups=groups,
        header=header if header is not None and len(header) == len(names) else None,
        bad_line_reasons=reasons,
        resampling=resampling,
        resolved_options=resolved,
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


def model_trial_groups(recordings: list[Recording]) -> list[str] | None:
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
