"""Labels from file names: a folder tree of recordings whose paths carry the label, subject and trial.

Many sets are stored one folder per subject, with the activity in each file's
name (``s03/walk_2.csv``, ``SA01/D07_R03.txt``), not as class folders. Rather than
have users build class folders of links, ``load_named_files`` matches one regular
expression against each file's path relative to the root, and takes the class
from its named group ``label``, the subject from ``subject`` and the trial from
``trial`` (both optional). Recordings of one (label, subject, trial) stay on one
side of a split (``Dataset.split_groups``), for sets that cut a trial into files.

numpy only, like ``edge_har.convert.datasets``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from edge_har.convert.datasets import (
    Dataset,
    DatasetError,
    _channels,
    _rate,
    _relative,
    scaled_dataset,
)
from edge_har.core.recordings import Recording, RecordingError, read_samples_result

log = logging.getLogger(__name__)

GROUPS = ("label", "subject", "trial")


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
    sample_rate_hz: float,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    skip_bad: bool = False,
    name: str | None = None,
    extensions: Sequence[str] = (".txt", ".csv"),
) -> Dataset:
    """Every ``.txt``/``.csv`` under ``root`` whose relative path (``/``-separated) ``name_regex`` matches.

    The regex is searched (not anchored: add ``^``/``$`` as needed). Files it does
    not match are left out with one warning (a README, a notes file); none
    matching is an error showing a file it was tried on.
    """
    root = Path(root)
    rate = _rate(sample_rate_hz, root, "labels from file names need --sample-rate (Hz)")
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
    for f in files:
        rel = f.relative_to(root).as_posix()
        match = pattern.search(rel)
        if match is None or not match.group("label"):
            unmatched.append(rel)
            continue
        try:
            result = read_samples_result(f, skip_bad=skip_bad)
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
            skipped[_relative(str(f), root)] = result.skipped
        recordings.append(Recording(result.samples, str(found["label"]), str(f), found["subject"] or None, rate))
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
    names = _channels(channels, first[1], root)
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
    )
