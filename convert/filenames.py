"""Labels from file names: the core's ``names`` format (:mod:`edge_har.core.formats.names`)."""

from edge_har.core.formats.names import GROUPS, compile_name_regex, list_recording_files, load_named_files

__all__ = ["GROUPS", "compile_name_regex", "list_recording_files", "load_named_files"]
