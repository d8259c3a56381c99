"""Config section of the camera path's runtime: ``video:``.

``source: {type: camera}`` (:class:`CameraSourceConfig`) is owned by the camera source plugin,
``edge_har.device.sources.camera``, like every source's config model; it is re-exported here
for existing imports. That module imports OpenCV only when a camera is opened, so
``validate-config`` still works on a machine without a camera stack.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from edge_har.device.sources.camera import CameraSourceConfig

__all__ = ["CameraSourceConfig", "VideoRuntimeConfig"]


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
    publish_keypoints: bool = Field(
        False,
        description=(
            "Pose bundles only: add each window's keypoints to its prediction (extra.keypoints: per frame, oldest "
            "first, 33 x [x, y, visibility] with x and y as fractions of the frame, null without a person); "
            "skeletons without images. Off by default: about 3 kB more per prediction."
        ),
    )
