"""The one interface the daemon drives: :class:`StreamRuntime`, and :func:`load_runtime` to get one.

The sensor :class:`~edge_har.device.runtime.Runtime` and the camera
:class:`~edge_har.device.video_runtime.VideoStreamRuntime` both implement it, so the
daemon has no per-kind branches (it used to probe with ``hasattr`` and silence the type
checker, and the two copies of the loading code drifted: the video one dropped the
delegate options). Both split the work the same way: ``windowing(...)`` makes the
source-thread stage (chunks -> windows), ``predict(window)`` runs in the inference thread.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

from edge_har.core.preprocessing import Preprocessing
from edge_har.device.runtime import Prediction, Window
from edge_har.device.smoothing import Smoother

log = logging.getLogger(__name__)


@runtime_checkable
class WindowStage(Protocol):
    """The source-thread stage: what ``StreamRuntime.windowing`` returns."""

    @property
    def source_rate_hz(self) -> float: ...

    def push(self, chunk: Any) -> Sequence[Window]: ...


@runtime_checkable
class StreamRuntime(Protocol):
    """A loaded bundle variant the daemon streams through (sensor or video)."""

    variant: str
    labels: list[str]
    pre: Preprocessing  # the video runtime's is its FrameSpec's view (channels, fps as the rate)
    smoother: Smoother

    @property
    def model_id(self) -> str: ...

    @classmethod
    def from_config(cls, cfg: Any) -> StreamRuntime: ...

    def windowing(
        self,
        source_rate_hz: Optional[float] = None,
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> WindowStage: ...

    def predict(self, window: Window) -> Prediction: ...

    def counters(self) -> dict[str, Any]:
        """Runtime-specific counters for the stats message; empty when there are none."""
        ...


def load_runtime(cfg: Any) -> StreamRuntime:
    """The runtime for ``cfg.bundle`` (a :class:`~edge_har.device.config.DeviceConfig`), by the bundle's kind.

    A video bundle (camera source) streams frames through encoder + head; a sensor bundle
    windows samples. Either way the interpreter section reaches every model whole.
    """
    from edge_har.device.runtime import Runtime
    from edge_har.device.video_runtime import VideoStreamRuntime, is_video_bundle

    if is_video_bundle(cfg.bundle):
        if cfg.variant == "auto":
            # Timing a video variant means an encoder per frame and a head per window, on frames:
            # not done (yet). `auto` runs the bundle's default variant, and says so.
            log.info("variant auto: a video bundle runs its default variant (only sensor bundles are timed)")
            cfg = cfg.model_copy(update={"variant": None})
        return VideoStreamRuntime.from_config(cfg)
    return Runtime.from_config(cfg)
