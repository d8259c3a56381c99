"""Interval labels and the UCI HAPT preset: the core's ``intervals`` and ``hapt`` formats
(:mod:`edge_har.core.formats.intervals`, :mod:`edge_har.core.formats.hapt`) under the names
this package has always offered."""

from edge_har.core.formats.hapt import (
    HAPT_BASIC,
    HAPT_CHANNELS,
    HAPT_NAME,
    HAPT_RATE_HZ,
    HAPT_UNITS,
    UCI_HAR_TEST_SUBJECTS,
    hapt_root,
    load_hapt,
)
from edge_har.core.formats.intervals import load_intervals
from edge_har.core.formats.segments import Segment, read_annotations, read_joined, read_label_names

__all__ = [
    "HAPT_BASIC",
    "HAPT_CHANNELS",
    "HAPT_NAME",
    "HAPT_RATE_HZ",
    "HAPT_UNITS",
    "UCI_HAR_TEST_SUBJECTS",
    "Segment",
    "hapt_root",
    "load_hapt",
    "load_intervals",
    "read_annotations",
    "read_joined",
    "read_label_names",
]
