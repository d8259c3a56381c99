"""The UEA/UCR ``.ts`` format: the core's ``ts`` format (:mod:`edge_har.core.formats.ts`)."""

from edge_har.core.formats.ts import SIDES, SUFFIX, is_ts, load_ts, read_ts, ts_files

__all__ = ["SIDES", "SUFFIX", "is_ts", "load_ts", "read_ts", "ts_files"]
