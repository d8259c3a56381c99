"""The data sets of ``convert``, ``evaluate`` and ``bench``: the shared core's format registry
(:mod:`edge_har.core.formats`) under the names this package has always offered, plus the
``--window`` / ``--stride`` duration parser.

Every layout (folder, hmp, csv, uci-har, intervals, hapt, names, ts) is one module of
:mod:`edge_har.core.formats`, which the device's replay source reads with too, so the
workstation and the device cut the same windows from the same files. No TensorFlow here.
"""

from __future__ import annotations

import re

from edge_har.core.formats import (
    Dataset,
    DatasetError,
    WindowSet,
    detect_format,
    format_names,
    load_dataset,
    make_window_set,
)
from edge_har.core.formats.cli import add_dataset_arguments, dataset_from_args
from edge_har.core.formats.common import (
    apply_label_map,
    file_list_hash,
    parse_label_map,
    refine,
    scaled_dataset,
)
from edge_har.core.formats.folder import load_folder, warn_folder_shape
from edge_har.core.formats.hmp import (
    HMP_CHANNELS,
    HMP_FILE_PATTERN,
    HMP_NAME,
    HMP_OFFSET,
    HMP_RATE_HZ,
    HMP_SCALE,
    HMP_SUBJECT_REGEX,
    HMP_UNITS,
    load_hmp,
)
from edge_har.core.formats.long_csv import load_long_csv
from edge_har.core.formats.uci_har import (
    UCI_HAR_NAME,
    UCI_HAR_RATE_HZ,
    UCI_HAR_SIGNALS,
    UCI_HAR_UNITS,
    UCI_HAR_WINDOW,
    load_uci_har,
)

__all__ = [
    "HMP_CHANNELS",
    "HMP_FILE_PATTERN",
    "HMP_NAME",
    "HMP_OFFSET",
    "HMP_RATE_HZ",
    "HMP_SCALE",
    "HMP_SUBJECT_REGEX",
    "HMP_UNITS",
    "UCI_HAR_NAME",
    "UCI_HAR_RATE_HZ",
    "UCI_HAR_SIGNALS",
    "UCI_HAR_UNITS",
    "UCI_HAR_WINDOW",
    "Dataset",
    "DatasetError",
    "WindowSet",
    "add_dataset_arguments",
    "apply_label_map",
    "dataset_from_args",
    "detect_format",
    "file_list_hash",
    "format_names",
    "load_dataset",
    "load_folder",
    "load_hmp",
    "load_long_csv",
    "load_uci_har",
    "make_window_set",
    "parse_duration",
    "parse_label_map",
    "refine",
    "scaled_dataset",
    "warn_folder_shape",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|ms|samples?)?\s*$", re.IGNORECASE)


def parse_duration(text: str | int, sample_rate_hz: float) -> int:
    """Samples for --window/--stride: "96" (samples), "3s" / "3.0s" (seconds), "500ms"; rounded to samples."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"expected a number of samples (96) or a duration (3s, 500ms), got {text!r}")
    value, unit = float(match.group(1)), (match.group(2) or "").lower()
    if unit in ("", "sample", "samples"):
        if value != int(value):
            raise ValueError(f"{text!r}: a number of samples must be whole (for seconds write {value:g}s)")
        samples = int(value)
    else:
        seconds = value / 1000.0 if unit == "ms" else value
        samples = int(round(seconds * sample_rate_hz))
    if samples < 1:
        raise ValueError(f"{text!r} is less than one sample at {sample_rate_hz:g} Hz")
    return samples


# ------------------------------------------------------------------ command line
