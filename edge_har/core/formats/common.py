"""What several formats share: labels, channel names, per-channel scaling, the file-list hash, the
rate check, and the options every format takes (``--columns``, ``--classes``, ``--label-map``),
applied by :func:`refine` after a format has loaded its data.

Format modules import from here and from :mod:`edge_har.core.recordings`, never from each other's
private helpers, so a format can be added, changed or removed alone.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from pydantic import Field

from edge_har.core.formats.base import Dataset, DatasetError, FormatOptions
from edge_har.core.recordings import Recording

log = logging.getLogger(__name__)

DROP = "-"


# ------------------------------------------------------------------ option fields several formats declare


def sample_rate_field(description: str = "") -> Any:
    return Field(
        None,
        gt=0,
        allow_inf_nan=False,
        validation_alias=_aliases("sample_rate", "sample_rate_hz"),
        description=description
        or "rate the recordings were made at (Hz); required, as the files do not record it, e.g. --sample-rate 50",
        json_schema_extra={"metavar": "HZ", "cli_type": "rate"},
    )


def channels_field() -> Any:
    return Field(
        None,
        min_length=1,
        description="names of the file's columns, in order (default ch0, ch1, ...; with --columns: of every "
        "column or of the chosen ones), e.g. --channels ax,ay,az",
        json_schema_extra={"metavar": "A,B,C", "cli_type": "names"},
    )


def scale_field() -> Any:
    return Field(
        None,
        min_length=1,
        description="value scaling, physical = raw * scale + offset: one value or one per channel (default 1), "
        "e.g. --scale 0.000598 (an MPU-6050's 16-bit counts at +-2 g to g)",
        json_schema_extra={"metavar": "S[,S...]", "cli_type": "floats"},
    )


def offset_field() -> Any:
    return Field(
        None,
        min_length=1,
        description="value offset, see --scale (default 0), e.g. --scale 0.047619 --offset -1.5 (HMP's 0..63 codes)",
        json_schema_extra={"metavar": "O[,O...]", "cli_type": "floats"},
    )


def units_field() -> Any:
    return Field(None, description="unit of the scaled values, recorded in the bundle, e.g. --units g (or m/s^2)")


def skip_bad_field() -> Any:
    return Field(
        False,
        description="skip malformed lines (text in a number column, wrong column count) with a warning and a "
        "count (recorded in bundle.json), instead of stopping at the first with its file and line; not for "
        "intervals, whose segments index rows, e.g. --data logs/ --sample-rate 50 --skip-bad",
    )


def subject_regex_field() -> Any:
    return Field(
        None,
        description="regex searched in each file name; its first group (or whole match) is the "
        r"subject id, e.g. '(s\d+)\.txt$' (write --subject-regex=-... for one that starts with '-'; "
        "hmp default: the volunteer id at the end, f1, m3, ...)",
        json_schema_extra={"metavar": "REGEX"},
    )


def unlabelled_class_field() -> Any:
    return Field(
        None,
        description="make the samples outside every segment a class of this name instead of leaving them out, "
        "e.g. --unlabelled-class other",
        json_schema_extra={"metavar": "NAME"},
    )


def include_model_field() -> Any:
    return Field(
        False,
        validation_alias=_aliases("include_model_trials", "include_model"),
        description="also read the *_MODEL folders as their class (HMP's model trials repeat "
        "regular trials and are kept on their trial's side of the split), e.g. --data HMP --include-model-trials",
    )


def _aliases(*names: str) -> Any:
    from pydantic import AliasChoices

    return AliasChoices(*names)


class ScalingOptions(FormatOptions):
    """Channel names and value scaling, for the formats whose files say neither."""

    channels: Optional[tuple[str, ...]] = channels_field()
    scale: Optional[tuple[float, ...]] = scale_field()
    offset: Optional[tuple[float, ...]] = offset_field()
    units: Optional[str] = units_field()


class CommonOptions(FormatOptions):
    """The options every format takes, applied to the loaded data set (:func:`refine`)."""

    columns: Optional[tuple[str, ...]] = Field(
        None,
        min_length=1,
        description="any layout: the columns to use, in this order, by 0-based index or name, e.g. --columns 0,1,2 "
        "or --columns acc_x,acc_y,acc_z (HAPT's accelerometer alone); --channels then names every column of the "
        "file or just these, and --scale/--offset are per chosen column",
        json_schema_extra={"metavar": "C,...", "cli_type": "names"},
    )
    classes: Optional[tuple[str, ...]] = Field(
        None,
        min_length=1,
        description="any layout: keep only these classes, e.g. HAPT's six basic activities "
        "--classes WALKING,WALKING_UPSTAIRS,WALKING_DOWNSTAIRS,SITTING,STANDING,LAYING",
        json_schema_extra={"metavar": "NAME,...", "cli_type": "names"},
    )
    label_map: Optional[str] = Field(  # (pattern, label) pairs are accepted too, from Python callers
        None,
        description="any layout: rename or merge classes before training, e.g. --label-map 'F*=fall,D*=adl' "
        "(shell patterns, first match wins, '-' leaves a class out: --label-map '*_TO_*=-'), or a file of "
        "PATTERN=LABEL lines; the model predicts the merged names and bundle.json records the map",
        json_schema_extra={"metavar": "RULES|FILE"},
    )
    event_focus: Optional[str] = Field(
        None,
        description="any layout: recordings labelled as a whole by an event (a file per fall) keep that class only "
        "around their impact, the peak of acceleration magnitude: --event-focus fall=3,3 keeps 3 s before and 3 s "
        "after it (with windows of W s, W,W keeps every window holding the impact); the rest of those recordings "
        "is left out, or becomes --event-rest; '-' reads whole recordings (evaluate a focused bundle on whole trials: "
        "evaluate BUNDLE --event-focus -)",
        json_schema_extra={"metavar": "CLASS=BEFORE,AFTER"},
    )
    event_rest: Optional[str] = Field(
        None,
        description="with --event-focus: the class the rest of an event recording becomes (e.g. adl: the standing "
        "before and the lying after are daily life), or '-' to leave it out (the default)",
        json_schema_extra={"metavar": "CLASS"},
    )


# ------------------------------------------------------------------ building a Dataset


def file_list_hash(files: Sequence[Path], root: Path) -> str:
    """sha256 over the sorted relative paths and sizes of the files read.

    Cheap on any size of data set, yet it changes when a file is added,
    removed, renamed or changes length, which is what provenance needs.
    """
    entries = sorted(f"{Path(f).relative_to(root).as_posix()}\t{Path(f).stat().st_size}\n" for f in files)
    return hashlib.sha256("".join(entries).encode()).hexdigest()


def labels_of(recordings: list[Recording], where: Path) -> list[str]:
    if not recordings:
        raise DatasetError(f"{where}: no recordings")
    return sorted({r.label for r in recordings})


def channel_names(channels: Sequence[str] | None, width: int, where: Path) -> tuple[str, ...]:
    if channels is None:
        return tuple(f"ch{i}" for i in range(width))
    if len(channels) != width:
        raise DatasetError(
            f"{where}: --channels names {len(channels)} channel(s) ({', '.join(channels)}) but the files have {width} columns"
        )
    if len(set(channels)) != len(channels):
        raise DatasetError(f"{where}: --channels repeats a name: {', '.join(channels)}")
    return tuple(channels)


def per_channel(values: Sequence[float], n: int, flag: str, where: Path) -> tuple[float, ...]:
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
        labels=labels_of(recordings, where),
        channels=channels,
        sample_rate_hz=rate,
        scale=per_channel(scale, len(channels), "--scale", where),
        offset=per_channel(offset, len(channels), "--offset", where),
        units=units or "",
        file_list_sha256=file_list_hash(files, hash_root),
        n_files=len(files),
        **fields,
    )


def check_rate(rate: float | None, where: Path, hint: str) -> float:
    if rate is None:
        raise DatasetError(f"{where}: no sample rate; {hint}")
    if not np.isfinite(rate) or rate <= 0:
        raise DatasetError(f"{where}: --sample-rate must be > 0 Hz, got {rate}")
    return float(rate)


# ------------------------------------------------------------------ folder of recordings and HMP


def relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when it is under it (for skipped-line counts), else as given."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


# ------------------------------------------------------------------ options every format takes


def column_index(token: str, names: Sequence[str], where: Path) -> int:
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
    event_focus: str | None = None,
    event_rest: str | None = None,
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
            names = channel_names(channels, width, where)
        elif channels is None and ds.header is not None and len(set(ds.header)) == width:
            names = ds.header  # the files' own header line names the columns --columns picks from
        idx = [column_index(str(c), names, where) for c in columns]
        if len(set(idx)) != len(idx):
            raise DatasetError(f"{where}: --columns picks a column twice: {', '.join(map(str, columns))}")
        chosen = tuple(names[i] for i in idx)
        if channels is not None and len(channels) != width:
            if len(channels) != len(idx):
                raise DatasetError(
                    f"{where}: --channels names {len(channels)} channel(s); give one per column of the file ({width}) "
                    f"or one per --columns entry ({len(idx)})"
                )
            chosen = channel_names(channels, len(idx), where)
        if scale is None:
            scale = [ds.scale[i] for i in idx] if len(ds.scale) == width > 1 else ds.scale
        if offset is None:
            offset = [ds.offset[i] for i in idx] if len(ds.offset) == width > 1 else ds.offset
        for r in ds.recordings:
            r.samples = np.ascontiguousarray(r.samples[:, idx])
        ds.channels = chosen
        ds.scale = per_channel(scale, len(idx), "--scale", where)
        ds.offset = per_channel(offset, len(idx), "--offset", where)
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
        keep_recordings(ds, keep)
        ds.labels = sorted(set(classes))
        ds.kept_classes = list(ds.labels)
    if event_focus == "-":  # whole recordings after all (evaluate a focused bundle's events on whole trials)
        event_focus = event_rest = None
    if event_rest is not None and event_focus is None:
        raise DatasetError(f"{where}: --event-rest {event_rest!r} goes with --event-focus CLASS=BEFORE,AFTER")
    if event_focus is not None:
        from edge_har.core.formats.event_focus import focus_events

        focus_events(ds, event_focus, event_rest, where)
    return ds


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
    keep_recordings(ds, keep)
    for r in ds.recordings:
        r.label = str(mapping[r.label])
    ds.labels = sorted({str(v) for v in mapping.values() if v is not None})
    ds.label_map = mapping
    merged = [f"{v} <- {', '.join(k for k, t in mapping.items() if t == v)}" for v in ds.labels]
    dropped = [k for k, v in mapping.items() if v is None]
    log.info("label map: %s%s", "; ".join(merged), f"; left out: {', '.join(dropped)}" if dropped else "")


def keep_recordings(ds: Dataset, keep: Sequence[int]) -> None:
    """Keep only these recordings, with their split groups and predefined sides."""
    if ds.split_groups is not None:
        ds.split_groups = [ds.split_groups[i] for i in keep]
    ds.recordings = [ds.recordings[i] for i in keep]
    if ds.predefined_split is not None:
        sources = {r.source for r in ds.recordings}
        ds.predefined_split = {k: v for k, v in ds.predefined_split.items() if k in sources}


# ------------------------------------------------------------------ windows


def recorded_columns(
    samples: np.ndarray, header: Sequence[str] | None, options: dict[str, Any], where: str
) -> np.ndarray:
    """One file's samples with the columns a reader record's ``columns`` option picks (by 0-based
    index, or by name from the file's header line or the recorded ``channels``), for a reader of
    single files (``serve``'s upload) that must choose what training chose; unchanged without one."""
    columns = options.get("columns")
    if not columns:
        return samples
    width = samples.shape[1]
    channels = options.get("channels")
    names: Sequence[str] = tuple(f"ch{i}" for i in range(width))
    if channels is not None and len(channels) == width:
        names = tuple(channels)
    elif header is not None and len(header) == width:
        names = tuple(header)
    idx = [column_index(str(c), names, Path(where)) for c in columns]
    return np.ascontiguousarray(samples[:, idx])
