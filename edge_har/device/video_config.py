"""Config sections of the camera path: ``source: {type: camera}`` and ``video:``.

They live apart from ``edge_har.device.sources.camera`` (which needs OpenCV and
threads) so that ``edge_har.device.config`` can put the camera into its source union
without importing either, and ``validate-config`` works on a machine without
a camera stack. Same conventions as the rest of the config: ``extra="forbid"``
and a description on every field.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CameraSourceConfig", "VideoRuntimeConfig"]


class CameraSourceConfig(BaseModel):
    """``source: {type: camera, ...}`` in a device config."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["camera"] = "camera"
    device: Union[int, str] = Field(
        0,
        description=(
            "What to open: a camera index (0 = /dev/video0), a V4L2 node such as /dev/video0, a video file path, "
            "or a network stream URL (rtsp://user@host:554/stream, http://host:8080/video)."
        ),
    )
    width: Optional[int] = Field(None, ge=16, le=7680, description="Requested frame width in pixels (the driver may round it).")
    height: Optional[int] = Field(None, ge=16, le=4320, description="Requested frame height in pixels.")
    fps: Optional[float] = Field(None, gt=0, le=240, description="Requested camera frame rate; the model samples its own rate from it.")
    fourcc: Optional[str] = Field(
        None,
        description="Requested pixel format, e.g. MJPG: USB webcams deliver higher rates and sizes in MJPG than in raw YUYV.",
    )
    backend: Literal["auto", "v4l2", "ffmpeg", "gstreamer"] = Field(
        "auto", description="OpenCV capture backend; auto lets OpenCV choose (V4L2 for /dev/video*, FFmpeg for files and URLs)."
    )
    realtime: bool = Field(
        True,
        description=(
            "Files only: true plays at the file's own frame rate and drops frames the consumer does not take, "
            "like a camera; false hands over every frame as fast as the consumer takes them (benchmarks)."
        ),
    )
    loop: bool = Field(False, description="Files only: start again at the end instead of stopping.")
    stop_at_end: bool = Field(
        False,
        description=(
            "Files only: when the file ends (without loop), infer what is queued, publish offline and exit 0. "
            "Otherwise the daemon stays up with an idle source."
        ),
    )
    buffer_frames: int = Field(
        1, ge=1, le=30, description="Newest frames kept for the consumer; older ones are dropped and counted in stats."
    )
    read_timeout_s: float = Field(
        5.0, gt=0, description="A live camera that delivers no frame for this long is treated as lost and reopened."
    )
    reconnect_initial_s: float = Field(1.0, gt=0, description="First wait before reopening a lost camera; doubles each failure.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reopening attempts.")

    @field_validator("fourcc")
    @classmethod
    def _fourcc(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and len(value) != 4:
            raise ValueError(f"fourcc must be 4 characters such as MJPG or YUYV, got {value!r}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: Union[int, str]) -> Union[int, str]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("device must be a camera index, a /dev/video* path, a file or a URL")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a camera index must be >= 0, got {value}")
        return value

    def target_kind(self) -> str:
        """``index``, ``v4l2``, ``url`` or ``file``."""
        if isinstance(self.device, int) or str(self.device).isdigit():
            return "index"
        text = str(self.device)
        if "://" in text:
            return "url"
        if text.startswith("/dev/"):
            return "v4l2"
        return "file"


class VideoRuntimeConfig(BaseModel):
    """``video:`` how a video bundle is streamed (ignored for sensor bundles)."""

    model_config = ConfigDict(extra="forbid")

    stride: Optional[int] = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Kept frames between predictions. Each frame costs one encoder run; each prediction one head run over "
            "the last T frames' features. Default: the bundle's stride (what training used)."
        ),
    )
    mode: Literal["split", "clip"] = Field(
        "split",
        description=(
            "split: encoder once per frame + head over a ring buffer of features (the efficient path). clip: run "
            "the whole clip model over the last T frames at every stride (needs a bundle made with --clip-model; "
            "for comparisons only)."
        ),
    )
