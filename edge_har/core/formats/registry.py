"""Data formats by name, in detection order: the one place a format is made known.

``--format auto`` takes the first format whose ``selected_by`` option is given (``--intervals``
picks ``intervals``), else the first whose ``detect(path)`` is true; the command-line flags
(:mod:`edge_har.core.formats.cli`), ``--format``'s choices and help, bundle.json's reader
record and the device's replay all come from this table. Adding a format is one module (an
options model and a :class:`~edge_har.core.formats.base.DataFormat`) and one ``register(...)``
line in :func:`_register_builtin`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError, FormatOptions, ReaderRecord
from edge_har.core.formats.common import CommonOptions, channel_names, refine

__all__ = ["AUTO", "detect_format", "format_names", "formats", "get_format", "load_dataset", "register", "unregister"]

AUTO = "auto"

_FORMATS: dict[str, DataFormat] = {}


def register(fmt: DataFormat, *, before: str | None = None) -> DataFormat:
    """Make ``fmt`` known under ``fmt.name``; detection tries it last, or just before format ``before``."""
    name = fmt.name
    if name == AUTO or not name:
        raise ValueError(f"a format cannot be called {name!r}")
    if name in _FORMATS and type(_FORMATS[name]) is not type(fmt):
        raise ValueError(f"format {name!r} is already registered ({type(_FORMATS[name]).__name__})")
    items = [(k, v) for k, v in _FORMATS.items() if k != name]
    at = next((i for i, (k, _) in enumerate(items) if k == before), len(items)) if before else len(items)
    items.insert(at, (name, fmt))
    _FORMATS.clear()
    _FORMATS.update(items)
    return fmt


def unregister(name: str) -> None:
    """Forget a format (tests that register their own); unknown names are ignored."""
    _FORMATS.pop(name, None)


def formats() -> dict[str, DataFormat]:
    """Registered formats in detection order."""
    return dict(_FORMATS)


def format_names() -> tuple[str, ...]:
    """``--format``'s choices: auto, then every registered format."""
    return (AUTO, *_FORMATS)


def get_format(name: str) -> DataFormat:
    fmt = _FORMATS.get(name)
    if fmt is None:
        raise DatasetError(f"--format {name!r}: unknown; choose one of {', '.join(format_names())}")
    return fmt


def detect_format(path: str | Path) -> str:
    """The first registered format whose ``detect`` takes ``path`` (see each format's ``detects``)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    for name, fmt in _FORMATS.items():
        if fmt.detect(path):
            return name
    raise DatasetError(f"{path}: no format recognises it; choose one with --format ({', '.join(_FORMATS)})")


def flag(name: str) -> str:
    """The command-line flag of an option field."""
    return "--" + name.replace("_", "-")


def _field_of(model: type[FormatOptions], key: str) -> str | None:
    """The field of ``model`` that ``key`` names (its own name or one of its validation aliases)."""
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
        if key == name or key in choices:
            return name
    return None


def _field_anywhere(key: str) -> str:
    for fmt in _FORMATS.values():
        name = _field_of(fmt.options, key)
        if name is not None:
            return name
    return _field_of(CommonOptions, key) or key


def _validated(model: type[FormatOptions], values: Mapping[str, Any], where: Path, fmt: str) -> Any:
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err.get("loc") else "?"
        raise DatasetError(f"{where}: {flag(_field_anywhere(key))} (format {fmt}): {err['msg']}") from None


def load_dataset(path: str | Path, *, format: str = AUTO, **options: Any) -> Dataset:
    """Load ``path`` as ``format`` (auto-detected by default; see :func:`detect_format`).

    ``options`` are option fields (``sample_rate``) or their keyword aliases
    (``sample_rate_hz``); None (and False for the switches) means "not given". An option
    the format does not take is an error naming its flag, not a silent no-op. The returned
    Dataset's ``reader`` records the format and the options that read it.
    """
    path = Path(path)
    if format != AUTO:
        get_format(format)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    given = {_field_anywhere(k): v for k, v in options.items() if v is not None and v is not False}
    if format == AUTO:
        chosen = next((n for n, f in _FORMATS.items() if f.selected_by and f.selected_by in given), None)
        name = chosen or detect_format(path)
    else:
        name = format
    how = "detected" if format == AUTO else "given"
    fmt = _FORMATS[name]
    recorded = {k: _json(v) for k, v in given.items()}
    common = {k: given.pop(k) for k in CommonOptions.model_fields if k in given}
    extra = [k for k in given if k not in fmt.options.model_fields]
    if extra:
        flags = ", ".join(flag(k) for k in extra)
        raise DatasetError(f"{path}: {flags} does not apply to format {name} ({how}){fmt.hint}")
    if fmt.needs == "folder" and not path.is_dir():
        raise DatasetError(f"{path}: format {name} needs a folder, this is a file")
    if fmt.needs == "file" and not path.is_file():
        raise DatasetError(f"{path}: format {name} needs a file, this is a folder")
    for key, message in fmt.required.items():
        if key not in given and fmt.required_unless.get(key) not in given:
            raise DatasetError(f"{path}: {message.format(how=how)}")
    parsed = _validated(fmt.options, given, path, name)
    recorded = {**_filled(fmt, parsed), **{k: v for k, v in recorded.items() if k in CommonOptions.model_fields}}
    label_map = common.pop("label_map", None)
    checked = _validated(CommonOptions, common, path, name)
    common = {k: getattr(checked, k) for k in common}
    if label_map is not None:
        common["label_map"] = _label_map(label_map, path)
    rename = None
    if "columns" in common and fmt.columns_are_channels:
        # The format picks its channel columns by name already: --columns is that, --channels renames.
        rename = parsed.channels
        parsed = parsed.model_copy(update={"channels": common.pop("columns")})
    elif "columns" in common:
        # The format reads every column under its default names; ``refine`` picks and names them.
        for key in ("channels", "scale", "offset"):
            if key in given:
                common[key] = getattr(parsed, key)
                parsed = parsed.model_copy(update={key: None})
    ds = fmt.load(path, parsed)
    if rename is not None:
        ds.channels = channel_names(rename, len(ds.channels), path)
    ds = refine(ds, **common)
    ds.reader = ReaderRecord(format=name, options={**recorded, **{k: _json(v) for k, v in ds.resolved_options.items()}})
    return ds


def _filled(fmt: DataFormat, parsed: FormatOptions) -> dict[str, Any]:
    """The validated options as JSON, each one not given replaced by the format's default for it (None
    where the format has none, left out), so the record does not depend on the defaults of a later version."""
    out: dict[str, Any] = {}
    for key, value in parsed.model_dump().items():
        if value is None:
            value = fmt.defaults.get(key)
        if value is not None:
            out[key] = _json(value)
    return out


def _label_map(value: Any, where: Path) -> Any:
    """``--label-map``: rules text or a file (str or Path), or (pattern, label) pairs."""
    if isinstance(value, (str, Path)):
        return value
    pairs = list(value) if isinstance(value, (list, tuple)) else None
    if pairs is None or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in pairs
    ):
        raise DatasetError(
            f"{where}: --label-map: expected PATTERN=LABEL rules, a file of them, or (pattern, label) pairs"
        )
    return [tuple(p) for p in pairs]


def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    return value


def load_recorded(path: str | Path, record: ReaderRecord | Mapping[str, Any], **overrides: Any) -> Dataset:
    """Read ``path`` the way a bundle's reader record says (``format`` + ``options``), options in
    ``overrides`` replacing the recorded ones (None removes one)."""
    rec = record if isinstance(record, ReaderRecord) else ReaderRecord.model_validate(dict(record))
    options = {**rec.options, **overrides}
    return load_dataset(path, format=rec.format, **{k: v for k, v in options.items() if v is not None})


def _register_builtin() -> None:
    """The built-in formats, in detection order. A new format: import its module here, add one line."""
    from edge_har.core.formats import folder, hapt, hmp, intervals, long_csv, mobifall, names, recorded, ts, uci_har

    register(ts.TsFormat())
    register(long_csv.CsvFormat())
    register(recorded.RecordedFormat())
    register(uci_har.UciHarFormat())
    register(hapt.HaptFormat())
    register(mobifall.MobiFallFormat())
    register(hmp.HmpFormat())
    register(folder.FolderFormat())
    register(intervals.IntervalsFormat())
    register(names.NamesFormat())


_register_builtin()
