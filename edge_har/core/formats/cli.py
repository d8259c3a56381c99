"""The data-set flags of every command that takes ``--data`` (convert, evaluate, bench), generated
from the registered formats' options models: one flag per option field (``sample_rate`` is
``--sample-rate``), its ``--help`` the field's description, prefixed with the formats it applies
to where it does not apply to all. A format's new option is a new flag without touching this file.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic.fields import FieldInfo

from edge_har.core.formats.base import Dataset
from edge_har.core.formats.common import CommonOptions
from edge_har.core.formats.registry import AUTO, flag, format_names, formats, load_dataset
from edge_har.core.progress import reading

__all__ = ["add_dataset_arguments", "dataset_from_args", "option_fields"]

DATA_HELP = (
    "--data is a folder <root>/<Class>/<recording>.txt|.csv (UCI HMP is auto-detected and needs no other "
    "option), one long CSV with a header (needs --label-column), an extracted 'UCI HAR Dataset' folder, "
    "recordings plus an annotation file of labelled segments (--intervals; UCI HAPT is auto-detected), "
    "a folder tree whose file names carry the labels (--name-regex), or a UEA/UCR .ts file."
)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(","))
    if not names or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names without empty entries, got {text!r}")
    return names


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in Hz, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a rate > 0 Hz, got {text!r}")
    return value


PARSERS: dict[str, Callable[[str], Any]] = {"rate": _rate, "floats": _floats, "names": _names}


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def option_fields() -> dict[str, list[tuple[str, FieldInfo]]]:
    """Every option field of every registered format (and the common ones, under "*"), by name:
    the (format, field) pairs declaring it, in registration order."""
    out: dict[str, list[tuple[str, FieldInfo]]] = {}
    for name, fmt in formats().items():
        for key, info in fmt.options.model_fields.items():
            out.setdefault(key, []).append((name, info))
    for key, info in CommonOptions.model_fields.items():
        out.setdefault(key, []).append(("*", info))
    return out


def _help(declared: list[tuple[str, FieldInfo]]) -> str:
    """The field's description, prefixed by the formats taking it (several descriptions: each with its own)."""
    by_text: dict[str, list[str]] = {}
    for fmt, info in declared:
        by_text.setdefault(info.description or "", []).append(fmt)
    if [fmt for fmt, _ in declared] == ["*"]:
        return declared[0][1].description or ""
    return "; ".join(f"{', '.join(fmts)}: {text}" for text, fmts in by_text.items())


def _argument(info: FieldInfo) -> dict[str, Any]:
    extra = _extra(info)
    kwargs: dict[str, Any] = {"default": info.default}
    if "metavar" in extra:
        kwargs["metavar"] = extra["metavar"]
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    if annotation is bool:
        return {"action": "store_true", "default": False}
    if "cli_type" in extra:
        kwargs["type"] = PARSERS[str(extra["cli_type"])]
    elif typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        kwargs.update(choices=choices, type=type(choices[0]))
    elif base in (Path, int, float):
        kwargs["type"] = base
    else:
        kwargs["type"] = str
    return kwargs


def _format_help() -> str:
    detected = [f"{name} is {fmt.detects}" if fmt.detects else "" for name, fmt in formats().items()]
    picked = [f"{fmt.selected_by and flag(fmt.selected_by)} makes it {name}" for name, fmt in formats().items()]
    return (
        "layout of --data. auto: "
        + ", ".join(d for d in detected if d)
        + "; "
        + " and ".join(p for p, (_, f) in zip(picked, formats().items()) if f.selected_by)
        + " (default: %(default)s), e.g. --format folder to set HMP's rate and scaling yourself"
    )


def add_dataset_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The data set options of every subcommand that takes --data, from the registered formats."""
    g = parser.add_argument_group("data set", DATA_HELP)
    g.add_argument(
        "--data",
        type=Path,
        required=required,
        metavar="PATH",
        help="the data set (a folder, a CSV or .ts file, 'UCI HAR Dataset', the HAPT folder); it is read in "
        "place, never copied, e.g. --data ../shared/data/hmp/HMP",
    )
    g.add_argument(
        "--format", "--layout", dest="format", type=str, default=AUTO, choices=format_names(), help=_format_help()
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, declared in option_fields().items():
        owners = {fmt for fmt, _ in declared}
        group_of = {formats()[f].help_group for f in owners if f != "*"}
        target = g
        if len(group_of) == 1 and None not in group_of and "*" not in owners:
            title, text = next(iter(group_of))  # type: ignore[misc]
            if title not in groups:
                groups[title] = parser.add_argument_group(title, text)
            target = groups[title]
        info = declared[0][1]
        flags = [flag(key), *_extra(info).get("aliases", [])]
        target.add_argument(*flags, dest=key, help=_help(declared), **_argument(info))


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The option fields ``args`` holds (every flag :func:`add_dataset_arguments` made)."""
    return {key: getattr(args, key, None) for key in option_fields()}


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    """Load the data set the options of :func:`add_dataset_arguments` describe, showing the progress of a long read."""
    with reading(args.data):
        return load_dataset(args.data, format=getattr(args, "format", AUTO) or AUTO, **dataset_options(args))
