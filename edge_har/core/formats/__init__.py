"""Data formats as plugins: one module per layout of recorded data, registered in detection order.

``load_dataset(path, format="auto", **options)`` reads any registered format; the registry is
:mod:`edge_har.core.formats.registry`, the base class :mod:`edge_har.core.formats.base`.
"""

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError, FormatOptions, ReaderRecord
from edge_har.core.formats.registry import (
    AUTO,
    detect_format,
    format_names,
    formats,
    get_format,
    load_dataset,
    load_recorded,
    register,
    unregister,
)
from edge_har.core.formats.windows import WindowSet, make_window_set

__all__ = [
    "AUTO",
    "DataFormat",
    "Dataset",
    "DatasetError",
    "FormatOptions",
    "ReaderRecord",
    "WindowSet",
    "detect_format",
    "format_names",
    "formats",
    "get_format",
    "load_dataset",
    "load_recorded",
    "make_window_set",
    "register",
    "unregister",
]
