"""The loaded TFLite models of one variant of a video bundle, shared by the workstation and the device.

``edge-har convert-video`` scores its converted variants with these models, ``serve`` predicts an
upload with them and the camera daemon streams through them, so the three cannot load or wire a
variant differently. A variant is one of:

* **split** (``parts`` ``encoder`` + ``head``): a per-frame CNN encoder and a head over the last
  T frames' feature vectors (optionally the whole ``clip`` model too, for comparisons);
* **pose** (``parts`` ``pose_detector`` + ``pose_landmarks`` + ``head``): the BlazePose
  :class:`~edge_har.core.pose_encoder.PoseEncoder` as the per-frame encoder;
* **one model** (image-seq bundles): one model per frame.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.frames import FrameSpec
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel


@dataclass
class VideoModels:
    """The loaded TFLite models of one variant of a video bundle."""

    bundle: Bundle
    variant: str
    spec: FrameSpec
    video_mode: str  # "video" | "image-seq" | "pose"
    encoder: Optional[TFLiteModel] = None
    head: Optional[TFLiteModel] = None
    clip: Optional[TFLiteModel] = None  # whole clip model, T frames in
    whole: Optional[TFLiteModel] = None  # one-model variant (image-seq)
    pose: Optional[Any] = None  # edge_har.core.pose_encoder.PoseEncoder (video mode "pose")

    @classmethod
    def load(
        cls,
        bundle: Bundle,
        variant: Optional[str] = None,
        *,
        options: Optional[InterpreterOptions] = None,
        backend: str = "auto",
        num_threads: Optional[int] = 1,
        delegate: Optional[str] = None,
        verify_sha256: bool = True,
        load_clip: bool = False,
    ) -> VideoModels:
        """Every model of the variant, each loaded with the same ``options`` (the keywords build
        them when ``options`` is not given: benchmarks and tests)."""
        if options is None:
            options = InterpreterOptions(backend, num_threads, delegate, verify_sha256=verify_sha256)
        if bundle.kind != "video":
            raise BundleError(f"{bundle.root}: a {bundle.kind!r} bundle, not a video bundle")
        v = bundle.variant(variant)
        spec = FrameSpec.from_json(bundle.data["preprocessing"], where=f"{bundle.root}/bundle.json: preprocessing")
        info = bundle.data.get("video") or {}
        models = cls(bundle, v.name, spec, str(info.get("mode", "video")))
        kwargs: dict[str, Any] = {"options": options}
        if models.video_mode == "pose":
            # BlazePose detector + landmarks as the encoder (edge_har.core.pose_encoder), then the head
            from edge_har.core.pose_encoder import POSE_PARTS, PoseEncoder

            for part in POSE_PARTS + ("head",):
                if part not in v.parts:
                    raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts has no '{part}'")
            detector, landmarks = (bundle.load_model(v.name, part=p, **kwargs) for p in POSE_PARTS)
            try:
                models.pose = PoseEncoder(
                    detector, landmarks, track=bool((bundle.data.get("pose") or {}).get("tracking", True))
                )
            except ValueError as exc:
                raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts: {exc}") from exc
            models.head = bundle.load_model(v.name, part="head", **kwargs)
        elif v.parts:
            for part in ("encoder", "head"):
                if part not in v.parts:
                    raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts has no '{part}'")
            models.encoder = bundle.load_model(v.name, part="encoder", **kwargs)
            models.head = bundle.load_model(v.name, part="head", **kwargs)
            if load_clip:
                models.clip = bundle.load_model(v.name, part="clip", **kwargs)
        else:
            models.whole = bundle.load_model(v.name, **kwargs)
        models.check()
        return models

    def check(self) -> None:
        """Every model's tensors against the bundle and each other (raises one BundleError naming them all).

        The encoder takes one frame, the head the last T of the encoder's feature vectors, the
        head (clip, whole model) outputs one probability per label: a mismatch found here stops
        the start (exit 78) instead of failing every window.
        """
        b, v, frame = self.bundle, self.variant, (1,) + self.spec.shape
        problems: list[str] = []
        if self.whole is not None:
            problems += b.model_problems(self.whole, v, expect_input=frame)
        if self.encoder is not None:
            problems += b.model_problems(self.encoder, v, "encoder", expect_input=frame)
        if self.head is not None:
            expect = (1, self.spec.window) + self.feature_shape if self.split else None
            problems += b.model_problems(self.head, v, "head", expect_input=expect)
        if self.clip is not None:
            problems += b.model_problems(self.clip, v, "clip", expect_input=(1, self.spec.window) + self.spec.shape)
        if problems:
            raise BundleError(f"{b.root / 'bundle.json'}: " + "; ".join(problems), problems)

    @property
    def split(self) -> bool:
        return self.whole is None

    @property
    def feature_shape(self) -> tuple[int, ...]:
        if self.pose is not None:
            return tuple(self.pose.feature_shape)
        assert self.encoder is not None
        return tuple(self.encoder.output.shape[1:])

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """One preprocessed float32 frame (H, W, 3) -> its float32 feature vector."""
        if self.pose is not None:
            return np.asarray(self.pose.encode(frame), np.float32)
        assert self.encoder is not None
        return self.encoder.predict(frame)

    def classify_features(self, features: np.ndarray) -> np.ndarray:
        """(T, D) features, oldest first -> class probabilities."""
        assert self.head is not None
        return self.head.predict(features)
