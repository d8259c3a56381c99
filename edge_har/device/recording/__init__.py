"""Recording the device's own data for training: a session folder written as samples or frames arrive.

The layouts are :mod:`edge_har.core.recording_layout`'s (samples) and
:mod:`edge_har.core.video_recording_layout`'s (camera frames); :class:`RecordingWriter` and
:class:`~edge_har.device.recording.video_writer.VideoRecordingWriter` write them so a power cut loses
at most about a second and leaves every file readable.
"""

from edge_har.device.recording.writer import RecordingFull, RecordingWriter

__all__ = ["RecordingFull", "RecordingWriter"]
