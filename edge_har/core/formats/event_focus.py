"""``--event-focus``: learn the impact, not the recording, from files labelled as a whole by an event.

A fall data set gives one file per fall, labelled "fall" from the first sample to the last: the
standing before and the lying after are "fall" too, and a model trained on it learns the
recording, not the moment (it calls a fall before the impact, and lying still afterwards). This
keeps as the event class only the stretch ``[impact - before_s, impact + after_s]`` of each such
recording, the impact being the peak of acceleration magnitude (the same definition the device's
event stage and the event metrics use, :func:`edge_har.core.events.impact_time`); the rest of the
recording is left out, or becomes ``rest`` (daily life). The pieces of one recording stay one split
group, so they land on the same side of a split. With windows of W seconds, ``before_s = after_s =
W`` keeps every window that holds the impact.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from edge_har.core.events import impact_time
from edge_har.core.formats.base import Dataset, DatasetError
from edge_har.core.recordings import Recording

__all__ = ["focus_events", "parse_event_focus", "whole_source"]

log = logging.getLogger(__name__)

DROP = "-"
_PIECE = re.compile(r"@\d+-\d+$")  # what _piece appends to a recording's source


def parse_event_focus(spec: str, where: Path | str) -> tuple[str, float, float]:
    """``fall=3,3`` (class, seconds before, seconds after); a DatasetError naming the flag otherwise."""
    label, sep, span = spec.partition("=")
    try:
        before, after = (float(v) for v in span.split(","))
    except ValueError:
        before = after = float("nan")
    if not sep or not label.strip() or not (0 <= before <= 600 and 0 <= after <= 600) or before + after <= 0:
        raise DatasetError(
            f"{where}: --event-focus {spec!r}: expected CLASS=BEFORE,AFTER in seconds around the impact, e.g. fall=3,3"
        )
    return label.strip(), before, after


def focus_events(ds: Dataset, spec: str, rest: str | None, where: Path | str) -> None:
    """Cut each recording of the event class to the stretch around its impact (see the module docstring)."""
    label, before_s, after_s = parse_event_focus(spec, where)
    if label not in ds.labels:
        raise DatasetError(f"{where}: --event-focus {label}: not a class of this data set ({', '.join(ds.labels)})")
    if rest is not None and (not rest.strip() or rest == label):
        raise DatasetError(f"{where}: --event-rest {rest!r}: a class name other than {label}, or '-' to leave it out")
    rest_label = None if rest is None or rest == DROP else rest.strip()
    scale = np.asarray(ds.scale, dtype=np.float64)
    offset = np.asarray(ds.offset, dtype=np.float64)
    groups = ds.group_keys()
    peaks: list[tuple[float, float] | None] = []
    for rec in ds.recordings:
        if rec.label != label or len(rec) == 0:
            peaks.append(None)
            continue
        rate = float(rec.sample_rate_hz or ds.sample_rate_hz)
        physical = rec.samples.astype(np.float64) * scale + offset
        peaks.append(impact_time(np.arange(len(rec)) / rate, physical, ds.channels))
    # A trial split by a pause in the data is several recordings of one group: only the piece holding the
    # trial's strongest peak holds its impact; the others are all "rest".
    strongest: dict[str, float] = {}
    for peak, group in zip(peaks, groups):
        if peak is not None:
            strongest[group] = max(strongest.get(group, -np.inf), peak[0])
    recordings: list[Recording] = []
    new_groups: list[str] = []
    sides: dict[str, str] = {}
    cut = rest_pieces = 0
    for rec, group, peak in zip(ds.recordings, groups, peaks):
        side = ds.predefined_split.get(rec.source) if ds.predefined_split is not None else None
        pieces = [(rec, rec.label)]
        if peak is not None and peak[0] < strongest[group]:
            pieces = [(rec, rest_label)] if rest_label is not None else []
            rest_pieces += len(pieces)
        elif peak is not None:
            rate = float(rec.sample_rate_hz or ds.sample_rate_hz)
            p = int(round(peak[1] * rate))
            a, b = max(0, p - int(round(before_s * rate))), min(len(rec), p + int(round(after_s * rate)) + 1)
            pieces = [(_piece(rec, a, b), label)]
            cut += 1
            if rest_label is not None:
                for lo, hi in ((0, a), (b, len(rec))):
                    if hi > lo:
                        pieces.append((_piece(rec, lo, hi), rest_label))
                        rest_pieces += 1
        for piece, piece_label in pieces:
            assert piece_label is not None
            piece.label = piece_label
            recordings.append(piece)
            new_groups.append(group)
            if side is not None:
                sides[piece.source] = side
    ds.recordings = recordings
    ds.split_groups = new_groups
    if ds.predefined_split is not None:
        ds.predefined_split = sides
    ds.labels = sorted({r.label for r in recordings})
    log.info(
        "--event-focus: %d %s recording(s) cut to %g s before and %g s after their impact (acceleration peak); "
        "the rest %s",
        cut,
        label,
        before_s,
        after_s,
        f"is {rest_label} ({rest_pieces} piece(s))" if rest_label else "is left out",
    )


def whole_source(source: str) -> str:
    """The source of the recording a piece was cut from (``file.txt@120-421`` -> ``file.txt``)."""
    return _PIECE.sub("", source)


def _piece(rec: Recording, lo: int, hi: int) -> Recording:
    return Recording(
        samples=np.ascontiguousarray(rec.samples[lo:hi]),
        label=rec.label,
        source=f"{rec.source}@{lo}-{hi}",
        subject=rec.subject,
        sample_rate_hz=rec.sample_rate_hz,
    )
