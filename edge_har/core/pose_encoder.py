"""The pose encoder: BlazePose detector + landmark model with LiteRT, one frame -> keypoint features.

A pose bundle's frame encoder is two MediaPipe ``.tflite`` models (``parts``
``pose_detector`` and ``pose_landmarks`` of every variant; the same files for every
variant, only the head is quantized). Per frame, as MediaPipe's pose graph does it
(``pose_landmark_cpu``, its options re-done in :mod:`edge_har.core.pose`) but without
MediaPipe, so the keypoints are MediaPipe's to within a pixel or so
(tests/test_pose_golden.py):

1. Where is the person? The previous frame's landmarks give the crop (their own
   hip-centre and size points, :data:`edge_har.core.pose.AUX_CENTER` / ``AUX_SCALE``,
   through MediaPipe's one-euro filter, which steadies the crop) while the landmark
   model says a person is present; otherwise the detector runs on the letterboxed frame
   (224 x 224, values in [-1, 1], zero border) and its best detection after decoding and
   weighted NMS gives it. Either way the crop is a square turned by the body's angle
   (hip centre -> size point upright), so people lying down are cropped upright.
2. The crop (256 x 256, values in [0, 1], edge pixels repeated beyond the frame, as
   MediaPipe's landmark ``ImageToTensorCalculator`` does) goes through the landmark model:
   39 landmarks (x, y, z, visibility, presence), a pose-presence score and, from the
   full model, a 64 x 64 heatmap per landmark that refines x and y. The landmarks are
   turned back into frame pixels. Presence below 0.5 is no person.
3. Two looks beyond MediaPipe's, both only where it would report no person: when the
   tracked crop loses the person, the detector looks again in the same frame (MediaPipe
   waits for the next); when a detector crop gives no person, one more look at a 1.4 x
   larger crop (a small, far person is often missed in the tight crop). On KTH they find
   a person in more frames than MediaPipe does without moving the keypoints of the others
   (benchmarks/pose_golden.py measures it with and without).
4. :func:`edge_har.core.pose.keypoint_features` turns the 33 body landmarks into the
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
ENCODER_VERSION = 3  # bump when what the encoder outputs for a frame changes (keys the keypoint cache)


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
    """Frames (float32 RGB in [0, 1], any size) -> (FEATURE_DIM,) keypoint features, tracking between frames.

    ``track=False`` runs the detector on every frame. ``second_look=False`` drops the 1.4 x
    crop after an empty detector crop and ``roi_filter=False`` the one-euro filter on the
    tracking points (points 3 and 1 of the module doc); both exist to be measured against
    MediaPipe (benchmarks/pose_golden.py), the defaults are what bundles use.
    """

    def __init__(
        self,
        detector: TFLiteModel,
        landmarks: TFLiteModel,
        track: bool = True,
        second_look: bool = True,
        roi_filter: bool = True,
    ) -> None:
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
        # (1, 64, 64, 39): the full model's per-landmark heatmap (logits), used to refine x and y
        n_lm = self._lm_shape[1] // 5
        heatmaps = [s for s in self.landmarks.outputs if len(s) == 4 and s[-1] == n_lm and s[1] != pose.LANDMARK_SIZE]
        self._heatmap_shape: Optional[tuple[int, ...]] = heatmaps[0] if heatmaps else None
        self.track = track
        self.second_look = second_look
        self.roi_filter: Optional[pose.OneEuroFilter] = pose.OneEuroFilter() if roi_filter else None
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
        if self.roi_filter is not None:
            self.roi_filter.reset()

    # ------------------------------------------------------------ the two models

    def detect(self, frame: np.ndarray) -> Optional[pose.Roi]:
        """The detector's best person in ``frame`` as a (rotated) crop, or None."""
        cv2 = _cv2()
        h, w = frame.shape[:2]
        box = pose.Letterbox.fit(h, w)
        # ImageToTensorCalculator, keep_aspect_ratio, BORDER_ZERO: one bilinear warp of the whole frame
        # into the centred square; the padding is pixel 0, i.e. -1 after the [-1, 1] mapping
        square = cv2.warpAffine(
            frame,
            box.affine(),
            (pose.DETECTOR_SIZE, pose.DETECTOR_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
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
        # the ROI is square and so is the tensor: keep_aspect_ratio pads nothing; MediaPipe's landmark
        # ImageToTensor leaves border_mode unset, which is BORDER_REPLICATE
        crop = cv2.warpAffine(
            frame,
            roi.affine(),
            (pose.LANDMARK_SIZE, pose.LANDMARK_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        started = time.perf_counter()
        self.landmarks.run(crop)
        raw = self.landmarks.get(self._lm_shape)[0].reshape(-1, 5)
        score = float(self.landmarks.get((1, 1)).reshape(-1)[0])
        heatmap = self.landmarks.get(self._heatmap_shape)[0] if self._heatmap_shape is not None else None
        self.counters.landmark_ms += 1000.0 * (time.perf_counter() - started)
        self.counters.landmark_runs += 1
        if score < pose.MIN_POSE_PRESENCE:
            return None, score
        points = raw[:, :2] / float(pose.LANDMARK_SIZE)  # TensorsToLandmarksCalculator: normalised to the crop
        if heatmap is not None:
            points = pose.refine_from_heatmap(points, heatmap)
        out = np.empty_like(raw, dtype=np.float32)
        out[:, :2] = roi.to_frame(points * pose.LANDMARK_SIZE)
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
        if landmarks is None and roi is not None and detected and self.second_look:
            roi = pose.Roi(roi.cx, roi.cy, roi.side * pose.RETRY_ROI_SCALE, roi.rotation)
            landmarks, score = self.landmark(frame, roi)
        if landmarks is None:
            self._roi = None
            if self.roi_filter is not None:
                self.roi_filter.reset()
            self.counters.frames_no_person += 1
            result = PoseResult(None, pose.keypoint_features(None), detected, score, roi)
        else:
            self._roi = self._next_roi(landmarks)
            keypoints = landmarks[: pose.NUM_LANDMARKS, :4]
            features = pose.keypoint_features(keypoints)
            if not pose.person_present(features):
                self.counters.frames_no_person += 1
            result = PoseResult(keypoints, features, detected, score, roi)
        self.last = result
        return result

    def _next_roi(self, landmarks: np.ndarray) -> pose.Roi:
        """The next frame's crop from this frame's two auxiliary points (``PoseLandmarksToRoi``), filtered first."""
        aux = landmarks[[pose.AUX_CENTER, pose.AUX_SCALE], :2].astype(np.float64)
        size = 2.0 * float(np.hypot(*(aux[1] - aux[0])))  # the object scale: the unscaled ROI's side in pixels
        if self.roi_filter is not None and size > 1e-6:
            aux = self.roi_filter.apply(aux, 1.0 / size)
        return pose.roi_from_points(aux[0], aux[1])

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """The encoder interface: frame -> features."""
        return self.process(frame).features
