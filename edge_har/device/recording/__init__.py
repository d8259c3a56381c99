"""Recording the device's own data for training: a session folder written as samples arrive.

The layout is :mod:`edge_har.core.recording_layout`'s; :class:`RecordingWriter` writes it so a
power cut loses at most about a second and leaves every file readable.
"""

from edge_har.device.recording.writer import RecordingFull, RecordingWriter

__all__ = ["RecordingFull", "RecordingWriter"]
