"""Labelled recordings and the readers of their file formats.

These readers serve both the workstation loaders (``convert.datasets``) and the
device's replay source, so they live on the device side and import no
TensorFlow. A ``Recording`` holds raw values exactly as the file has them;
scaling to physical units happens in ``edge_har.preprocessing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class RecordingError(ValueError):
    """Bad input data; the message names the file (and line, where there is one)."""


@dataclass
class Recording:
    """One continuous recording of one activity by one subject."""

    samples: np.ndarray  # (n, channels) float32, raw values as read
    label: str
    source: str  # file path, plus a row range for recordings cut from one long CSV
    subject: str | None = None
    sample_rate_hz: float | None = None

    def __len__(self) -> int:
        return len(self.samples)
