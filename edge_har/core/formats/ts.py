"""Format ``ts``: the UEA/UCR ``.ts`` format (sktime's and aeon's time-series classification files), already windowed.

A ``.ts`` file is ``#`` comment lines, an ``@`` header (``@problemName``,
``@timeStamps``, ``@missing``, ``@univariate``, ``@dimensions``, ``@equalLength``,
``@seriesLength``, ``@classLabel true <labels>``, then ``@data``) and one case a
line: each dimension's values comma-separated, dimensions separated by ``:``,
the class label last (sktime's "ts File Format v1.0"; aeon's data-format page).
Each case becomes one recording (channels = dimensions), as UCI HAR's windows
do. ``<name>_TRAIN.ts`` and ``<name>_TEST.ts`` in one folder are read together,
their partition becoming the predefined split.

Read here rather than with aeon or sktime: aeon 1.6 needs numba, pandas,
scikit-learn and scipy to read what is a few dozen lines of text, and neither
library is in the device or the workstation environment. Not supported, each
refused with the line: timestamped values ``(t, v)``, regression targets
(``@targetLabel``), files without class labels, missing values (``?``/NaN).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError
from edge_har.core.formats.common import ScalingOptions, channel_names, check_rate, sample_rate_field, scaled_dataset
from edge_har.core.recordings import Recording

log = logging.getLogger(__name__)

SUFFIX = ".ts"
SIDES = {"_TRAIN": "train", "_TEST": "test"}


class TsOptions(ScalingOptions):
    """Options of a .ts file: it records neither rate nor channel names."""

    sample_rate: Optional[float] = sample_rate_field()


class TsFormat(DataFormat):
    name = "ts"
    options = TsOptions
    detects = "a .ts file (or a folder of *_TRAIN.ts)"
    required = {"sample_rate": ".ts files record no rate; they need --sample-rate (Hz) (format ts, {how})"}
    hint = "; a .ts file holds labelled windows, one case a line"

    def detect(self, path: Path) -> bool:
        return is_ts(path)

    def load(self, path: Path, options: TsOptions) -> Dataset:
        assert options.sample_rate is not None
        return load_ts(
            path,
            sample_rate_hz=options.sample_rate,
            channels=options.channels,
            scale=options.scale or (1.0,),
            offset=options.offset or (0.0,),
            units=options.units or "",
        )


def _true(value: str, path: Path, lineno: int, tag: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise DatasetError(f"{path}:{lineno}: {tag} must be true or false, got {value.strip()!r}")
    return v == "true"


def read_ts(path: str | Path) -> tuple[list[tuple[int, np.ndarray, str]], list[str], dict[str, str]]:
    """The cases of one ``.ts`` file: (line, (length, dimensions) float32 array, label); the declared
    class labels; the header tags (lower-case name -> value). Every problem is a DatasetError naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    tags: dict[str, str] = {}
    labels: list[str] | None = None
    data_at = None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise DatasetError(f"{path}:{lineno}: a data line before @data (not a .ts file?): {line[:60]!r}")
        tag, _, value = line.partition(" ")
        tag = tag.lower()
        if tag == "@data":
            data_at = lineno
            break
        if tag == "@timestamps" and _true(value, path, lineno, tag):
            raise DatasetError(f"{path}:{lineno}: timestamped .ts files ((t, v) values) are not supported")
        if tag == "@targetlabel" and _true(value.split()[0] if value.split() else value, path, lineno, tag):
            raise DatasetError(
                f"{path}:{lineno}: a regression problem (@targetLabel true); edge-har trains classifiers"
            )
        if tag == "@classlabel":
            parts = value.split()
            if not parts or not _true(parts[0], path, lineno, tag):
                raise DatasetError(f"{path}:{lineno}: @classLabel false: the cases have no class labels to train on")
            labels = parts[1:]
            if not labels:
                raise DatasetError(f"{path}:{lineno}: @classLabel true but no labels listed")
        tags[tag[1:]] = value.strip()
    if data_at is None:
        raise DatasetError(f"{path}: no @data line (not a .ts file?)")
    if labels is None:
        raise DatasetError(f"{path}: no @classLabel line in the header")
    declared = int(tags["dimensions"]) if tags.get("dimensions", "").isdigit() else None
    if declared is None and tags.get("univariate", "").lower() == "true":
        declared = 1
    length = int(tags["serieslength"]) if tags.get("serieslength", "").isdigit() else None
    equal = tags.get("equallength", "").lower() == "true"
    known = set(labels)
    cases: list[tuple[int, np.ndarray, str]] = []
    for lineno, raw in enumerate(lines[data_at:], start=data_at + 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        *dims, label = (p.strip() for p in line.split(":"))
        if not dims:
            raise DatasetError(f"{path}:{lineno}: expected 'v,v,...:v,v,...:label', got {line[:60]!r}")
        if label not in known:
            raise DatasetError(f"{path}:{lineno}: class {label!r} is not in @classLabel ({', '.join(labels)})")
        if declared is not None and len(dims) != declared:
            raise DatasetError(f"{path}:{lineno}: {len(dims)} dimension(s) where @dimensions says {declared}")
        series = []
        for d, text in enumerate(dims, start=1):
            if text.startswith("("):
                raise DatasetError(f"{path}:{lineno}: dimension {d}: timestamped values are not supported")
            try:
                values = [float(v) for v in text.split(",")]
            except ValueError:
                bad = next(v for v in text.split(",") if not _is_float(v)).strip()
                what = "a missing value, not supported" if bad == "?" else "not a number"
                raise DatasetError(f"{path}:{lineno}: dimension {d}: {bad!r} is {what}") from None
            if not all(math.isfinite(v) for v in values):
                raise DatasetError(f"{path}:{lineno}: dimension {d}: missing or non-finite values are not supported")
            series.append(values)
        lengths = {len(s) for s in series}
        if len(lengths) != 1:
            raise DatasetError(
                f"{path}:{lineno}: the dimensions differ in length ({', '.join(str(len(s)) for s in series)})"
            )
        n = lengths.pop()
        if equal and length is not None and n != length:
            raise DatasetError(f"{path}:{lineno}: {n} values where @seriesLength says {length}")
        cases.append((lineno, np.asarray(series, np.float32).T.copy(), label))
    if not cases:
        raise DatasetError(f"{path}: no cases after @data")
    widths = {c[1].shape[1] for c in cases}
    if len(widths) != 1:
        raise DatasetError(
            f"{path}: cases with different numbers of dimensions ({', '.join(map(str, sorted(widths)))})"
        )
    return cases, labels, tags


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def ts_files(path: Path) -> list[tuple[Path, str | None]]:
    """(file, side) of a ``.ts`` file, or of a folder's ``<name>_TRAIN.ts`` and ``<name>_TEST.ts``."""
    if path.is_file():
        return [(path, None)]
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == SUFFIX)
    paired: list[tuple[Path, str | None]] = [
        (p, side) for p in found for tail, side in SIDES.items() if p.stem.upper().endswith(tail)
    ]
    if paired:
        stems = {p.stem[: -len(tail)] for p, _ in paired for tail in SIDES if p.stem.upper().endswith(tail)}
        if len(stems) > 1:
            raise DatasetError(f"{path}: .ts files of several problems ({', '.join(sorted(stems))}); point at one file")
        return paired
    if len(found) == 1:
        return [(found[0], None)]
    if not found:
        raise DatasetError(f"{path}: no .ts files")
    raise DatasetError(f"{path}: {len(found)} .ts files and no <name>_TRAIN.ts/<name>_TEST.ts pair; point at one file")


def is_ts(path: Path) -> bool:
    """A ``.ts`` file, or a folder holding a ``*_TRAIN.ts`` (what auto-detection takes for this layout)."""
    if path.is_file():
        return path.suffix.lower() == SUFFIX
    return path.is_dir() and any(p.is_file() and p.name.upper().endswith("_TRAIN.TS") for p in path.iterdir())


def load_ts(
    path: str | Path,
    *,
    sample_rate_hz: float,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    name: str | None = None,
) -> Dataset:
    """A ``.ts`` file (or a ``_TRAIN``/``_TEST`` pair) as a Dataset of one recording per case.

    The format records no sample rate, so ``sample_rate_hz`` is required; with
    equal-length cases ``native_window`` is that length (train with ``--window``
    of it, as for UCI HAR).
    """
    path = Path(path)
    files = ts_files(path)
    rate = check_rate(sample_rate_hz, path, ".ts files record no rate: pass --sample-rate (Hz)")
    recordings: list[Recording] = []
    predefined: dict[str, str] = {}
    problem = ""
    width: tuple[Path, int] | None = None
    for f, side in files:
        cases, _, tags = read_ts(f)
        problem = problem or tags.get("problemname", "")
        w = cases[0][1].shape[1]
        if width is None:
            width = (f, w)
        elif w != width[1]:
            raise DatasetError(f"{f}: {w} dimensions, but {width[0]} has {width[1]}")
        for lineno, samples, label in cases:
            source = f"{f}:line {lineno}"
            recordings.append(Recording(samples, label, source, None, rate))
            if side is not None:
                predefined[source] = side
    assert width is not None
    lengths = {len(r) for r in recordings}
    names = channel_names(channels, width[1], path)
    root = path if path.is_dir() else path.parent
    return scaled_dataset(
        recordings=recordings,
        channels=names,
        rate=rate,
        scale=scale,
        offset=offset,
        units=units,
        files=[f for f, _ in files],
        where=path,
        hash_root=root,
        name=name or problem or (path.stem if path.is_file() else path.name),
        root=root,
        native_window=lengths.pop() if len(lengths) == 1 else None,
        predefined_split=predefined or None,
        format="ts",
        path=path,
    )
