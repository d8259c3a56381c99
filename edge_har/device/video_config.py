"""The video runtime's config section, ``video:`` (its options reach the runtime as
:class:`~edge_har.device.runtime_api.RuntimeOptions` fields ``stride``, ``mode`` and
``publish_keypoints``; the daemon hands ``no_person_warn_s`` to the source-thread stage).

``source: {type: camera}`` is the camera source plugin's own model,
:class:`edge_har.device.sources.camera.CameraSourceConfig`, like every source's config.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


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
    no_person_warn_s: Optional[float] = Field(
        60.0,
        ge=1,
        le=86400,
        description=(
            "Pose bundles only: log a WARNING once when no person has been in a frame for this many seconds (by "
            "the frames' wall time; since the start if nobody was ever seen), and an INFO line when one is seen "
            "again. The stats carry the same clock as frames.no_person_s. null: never warn."
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
