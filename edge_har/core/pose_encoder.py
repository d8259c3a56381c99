"""The pose encoder: BlazePose detector + landmark model with LiteRT, one frame -> keypoint features.

A pose bundle's frame encoder is two MediaPipe ``.tflite`` models (``parts``
``pose_detector`` and ``pose_landmarks`` of every variant; the same files for every
variant, only the head is quantized). Per frame, as MediaPipe's pose graph does it
but without MediaPipe:

1. Where is the person? The previous frame's landmarks give the crop (their own
   hip-centre and size points, :data:`edge_har.core.pose.AUX_CENTER` / ``AUX_SCALE``)
   while the landmark model says a person is present; otherwise the detector runs on
   the letterboxed frame (224 x 224, values in [-1, 1]) and its best detection after
   decoding and weighted NMS gives it.
2. The square crop (256 x 256, values in [0, 1]) goes through the landmark model:
   39 landmarks (x, y, z, visibility, presence) and a pose-presence score. When a
   detector crop gives no person, one more look at a 1.4 x larger crop (not in
   MediaPipe: it recovers far-away people the tight crop misses).
3. :func:`edge_har.core.pose.keypoint_features` turns the 33 body landmarks into the
   head's features: the same function the workstation used to make the training
   features (it runs this very class over the clips), so the two sides cannot drift.

No person (no detection, or presence below 0.5): the features are zeros with the
person flag 0, counted in ``frames_no_person``. Nothing here imports TensorFlow or mediapipe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edge_har.core import pose
from edge_har.core.frames import _cv2
from edge_har.core.interpreter import TFLiteModel

DETECTOR_PART = "pose_detector"
LANDMARKS_PART = "pose_landmarks"
POSE_PARTS = (DETECTOR_PART, LANDMARKS_PART)
ENCODER_VERSION = 2  # bump when what the encoder outputs for a frame changes (keys the keypoint cache)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0))), np.float32)


class _Raw:
    """A loaded model's raw interpreter with its outputs found by shape (TFLiteModel reads output 0 only)."""

    def __init__(self, model: TFLiteModel) -> None:
        self.model = model
        self.interp = model.interpreter
        self.input_index = self.interp.get_input_details()[0]["index"]
        self.outputs = {tuple(int(v) for v in d["shape"]): d["index"] for d in self.interp.get_output_details()}

    def run(self, x: np.ndarray) -> None:
        self.interp.set_tensor(self.input_index, np.ascontiguousarray(x[None], np.float32))
        self.interp.invoke()

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(self.interp.get_tensor(self.outputs[shape]))


@dataclass
class PoseResult:
    """One frame's pose: the (33, 4) keypoints in frame pixels (None without a person) and how it was found."""

    keypoints: Optional[np.ndarray]
    features: np.ndarray
    detected: bool  # the detector ran on this frame (no track to follow)
    score: float  # landmark model's presence score (0 when nothing was cropped)
    roi: Optional[pose.Roi] = None


@dataclass
class PoseCounters:
    frames: int = 0
    frames_no_person: int = 0
    detector_runs: int = 0
    detector_ms: float = 0.0
    landmark_runs: int = 0
    landmark_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_no_person": self.frames_no_person,
            "detector_runs": self.detector_runs,
            "detector_ms_mean": round(self.detector_ms / self.detector_runs, 3) if self.detector_runs else None,
            "landmark_runs": self.landmark_runs,
            "landmark_ms_mean": round(self.landmark_ms / self.landmark_runs, 3) if self.landmark_runs else None,
        }


class PoseEncoder:
    """Frames (float32 RGB in [0, 1], any size) -> (FEATURE_DIM,) keypoint features, tracking between frames."""

    def __init__(self, detector: TFLiteModel, landmarks: TFLiteModel, track: bool = True) -> None:
        self.detector = _Raw(detector)
        self.landmarks = _Raw(landmarks)
        det_in = tuple(detector.input.shape)
        lm_in = tuple(landmarks.input.shape)
        if det_in[1:3] != (pose.DETECTOR_SIZE, pose.DETECTOR_SIZE) or lm_in[1:3] != (
            pose.LANDMARK_SIZE,
            pose.LANDMARK_SIZE,
        ):
            raise ValueError(
                f"pose models take {list(det_in)} and {list(lm_in)}; expected the BlazePose detector "
                f"({pose.DETECTOR_SIZE} px) and landmark_full ({pose.LANDMARK_SIZE} px) models"
            )
        self.anchors = pose.ssd_anchors()
        self._boxes_shape = (1, len(self.anchors), 12)
        self._scores_shape = (1, len(self.anchors), 1)
        if self._boxes_shape not in self.detector.outputs or self._scores_shape not in self.detector.outputs:
            raise ValueError(f"{detector.path.name}: outputs {sorted(self.detector.outputs)} are not BlazePose's")
        # (1, 195): 39 landmarks x (x, y, z, visibility, presence); the auxiliary ROI points must be there
        shapes = [s for s in self.landmarks.outputs if len(s) == 2 and s[1] % 5 == 0 and s[1] > 5 * pose.AUX_SCALE]
        if not shapes or (1, 1) not in self.landmarks.outputs:
            raise ValueError(f"{landmarks.path.name}: outputs {sorted(self.landmarks.outputs)} are not BlazePose's")
        self._lm_shape: tuple[int, ...] = shapes[0]
        self.track = track
        self.counters = PoseCounters()
        self._roi: Optional[pose.Roi] = None
        self.last: Optional[PoseResult] = None

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (pose.FEATURE_DIM,)

    def reset(self) -> None:
        """Forget the tracked person (a new clip or camera segment)."""
        self._roi = None
        self.last = None

    # ------------------------------------------------------------ the two models

    def detect(self, frame: np.ndarray) -> Optional[pose.Roi]:
        """The detector's best person in ``frame`` as a crop, or None."""
        cv2 = _cv2()
        h, w = frame.shape[:2]
        box = pose.Letterbox.fit(h, w)
        nw, nh = max(1, round(w * box.scale)), max(1, round(h * box.scale))
        square = np.zeros((pose.DETECTOR_SIZE, pose.DETECTOR_SIZE, 3), np.float32)
        top, left = int(round(box.pad_y)), int(round(box.pad_x))
        square[top : top + nh, left : left + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        box = pose.Letterbox(box.scale, float(left), float(top))
        started = time.perf_counter()
        self.detector.run(square * 2.0 - 1.0)
        raw_boxes, raw_scores = self.detector.get(self._boxes_shape)[0], self.detector.get(self._scores_shape)[0]
        self.counters.detector_ms += 1000.0 * (time.perf_counter() - started)
        self.counters.detector_runs += 1
        dets = pose.weighted_nms(pose.decode_detections(raw_boxes, raw_scores, self.anchors))
        if not len(dets):
            return None
        points = box.to_frame(dets.keypoints[0, :2])
        return pose.roi_from_points(points[0], points[1])

    def landmark(self, frame: np.ndarray, roi: pose.Roi) -> tuple[Optional[np.ndarray], float]:
        """(39, 5) landmarks in frame pixels (x, y, z, visibility, presence as 0..1) and the presence score."""
        cv2 = _cv2()
        crop = cv2.warpAffine(
            frame,
            roi.affine(),
            (pose.LANDMARK_SIZE, pose.LANDMARK_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        started = time.perf_counter()
        self.landmarks.run(crop)
        raw = self.landmarks.get(self._lm_shape)[0].reshape(-1, 5)
        score = float(self.landmarks.get((1, 1)).reshape(-1)[0])
        self.counters.landmark_ms += 1000.0 * (time.perf_counter() - started)
        self.counters.landmark_runs += 1
        if score < pose.MIN_POSE_PRESENCE:
            return None, score
        out = np.empty_like(raw, dtype=np.float32)
        out[:, :2] = roi.to_frame(raw[:, :2])
        out[:, 2] = raw[:, 2] * roi.side / pose.LANDMARK_SIZE
        out[:, 3] = _sigmoid(raw[:, 3])
        out[:, 4] = _sigmoid(raw[:, 4])
        return out, score

    # ------------------------------------------------------------ per frame

    def process(self, frame: np.ndarray) -> PoseResult:
        """One float32 RGB frame (H, W, 3) in [0, 1] -> its pose (tracked from the last frame when possible)."""
        frame = np.asarray(frame, np.float32)
        self.counters.frames += 1
        roi, detected = (self._roi if self.track else None), False
        if roi is None:
            roi, detected = self.detect(frame), True
        landmarks, score = (None, 0.0) if roi is None else self.landmark(frame, roi)
        if landmarks is None and not detected:  # lost the track: look again in this frame
            roi, detected = self.detect(frame), True
            landmarks, score = (None, 0.0) if roi is None else self.landmark(frame, roi)
        if landmarks is None and roi is not None and detected:
            # a second look with more context: a small, far person (KTH's zoomed-out scenes) is often missed
            # in the detector's tight crop and found in one 1.4 x larger (half of such frames, measured)
            roi = pose.Roi(roi.cx, roi.cy, roi.side * pose.RETRY_ROI_SCALE)
            landmarks, score = self.landmark(frame, roi)
        if landmarks is None:
            self._roi = None
            self.counters.frames_no_person += 1
            result = PoseResult(None, pose.keypoint_features(None), detected, score, roi)
        else:
            self._roi = pose.roi_from_points(landmarks[pose.AUX_CENTER, :2], landmarks[pose.AUX_SCALE, :2])
            keypoints = landmarks[: pose.NUM_LANDMARKS, :4]
            features = pose.keypoint_features(keypoints)
            if not pose.person_present(features):
                self.counters.frames_no_person += 1
            result = PoseResult(keypoints, features, detected, score, roi)
        self.last = result
        return result

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """The encoder interface: frame -> features."""
        return self.process(frame).features
