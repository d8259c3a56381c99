"""BlazePose arithmetic shared by training and the device: anchors, box decoding, NMS, crops, keypoint features.

The pose encoder (``edge_har.core.pose_encoder``) runs MediaPipe's two BlazePose
``.tflite`` models with LiteRT; MediaPipe itself (its graphs, calculators, protobuf pin)
is never installed. What its graphs do around the two models is re-done here, in
numpy, from the options MediaPipe's ``pose_detection_cpu`` and ``pose_landmark_cpu``
graphs give their calculators:

* :func:`ssd_anchors`: ``SsdAnchorsCalculator`` (5 layers, strides 8, 16, 32, 32, 32,
  scales 0.1484375..0.75, fixed anchor size): 2254 anchors for a 224 x 224 input.
* :func:`decode_detections`: ``TensorsToDetectionsCalculator`` (12 numbers per
  anchor: box centre x, y, width, height, then 4 keypoints x, y; reverse output
  order; scale 224; sigmoid scores clipped at +-100; score threshold 0.5).
* :func:`weighted_nms`: ``NonMaxSuppressionCalculator`` (IoU 0.3, WEIGHTED).
* :func:`roi_from_points`: ``AlignmentPointsRectsCalculator`` + ``RectTransformationCalculator``:
  a square centred on the hip centre, side 2 x 1.25 x the distance to the
  second (size) keypoint. The crop is axis-aligned: MediaPipe also rotates it
  upright, which matters for people lying down, not for the upright actions
  this project classifies (a choice, recorded in the bundle).
* :func:`keypoint_features`: the head's input per frame: the 33 landmarks centred on
  the hip centre and divided by the torso length (shoulder centre to hip centre),
  visibility kept, plus a person-present flag. A frame without a person is all
  zeros with the flag 0: the head sees an explicit mask, never stale keypoints.

Every function takes and returns plain numpy arrays, so tests can check them with
numbers worked out by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

NUM_LANDMARKS = 33  # BlazePose body landmarks; the model outputs 39 (33 + 6 auxiliary)
LANDMARK_VALUES = 4  # x, y, z, visibility per landmark in the features
FEATURE_DIM = NUM_LANDMARKS * LANDMARK_VALUES + 1  # + person-present flag (last)
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
AUX_CENTER, AUX_SCALE = 33, 34  # the landmark model's own ROI points (hip centre, size point)
FEATURE_CLIP = 8.0  # |feature| bound in torso lengths: keeps int8 calibration ranges sane
DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
ROI_SCALE = 1.25
RETRY_ROI_SCALE = 1.4  # the encoder's second look when a detector crop gives no person
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
MIN_POSE_PRESENCE = 0.5


@dataclass(frozen=True)
class AnchorOptions:
    """``SsdAnchorsCalculatorOptions`` as MediaPipe's pose_detection graph sets them."""

    input_size: int = DETECTOR_SIZE
    num_layers: int = 5
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    anchor_offset: float = 0.5
    fixed_anchor_size: bool = True


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) / 2
    return min_scale + (max_scale - min_scale) * index / (count - 1)


def ssd_anchors(options: AnchorOptions = AnchorOptions()) -> np.ndarray:
    """(N, 4) anchors ``x_center, y_center, width, height`` (normalised), in the model's output order.

    Consecutive layers with the same stride share one feature map: each adds its
    aspect ratios plus one interpolated-scale anchor per cell, as SsdAnchorsCalculator does.
    """
    o = options
    out: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < o.num_layers:
        sizes: list[tuple[float, float]] = []  # (width, height) of each anchor of a cell
        last = layer
        while last < o.num_layers and o.strides[last] == o.strides[layer]:
            scale = _scale(o.min_scale, o.max_scale, last, o.num_layers)
            for ratio in o.aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if o.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == o.num_layers - 1 else _scale(o.min_scale, o.max_scale, last + 1, o.num_layers)
                s, r = math.sqrt(scale * nxt), o.interpolated_scale_aspect_ratio
                sizes.append((s * math.sqrt(r), s / math.sqrt(r)))
            last += 1
        fm = int(math.ceil(o.input_size / o.strides[layer]))
        for y in range(fm):
            for x in range(fm):
                for w, h in sizes:
                    cx, cy = (x + o.anchor_offset) / fm, (y + o.anchor_offset) / fm
                    out.append((cx, cy, 1.0, 1.0) if o.fixed_anchor_size else (cx, cy, w, h))
        layer = last
    return np.asarray(out, np.float32)


@dataclass
class Detections:
    """Decoded person detections, normalised to the detector's square input."""

    boxes: np.ndarray  # (N, 4) xmin, ymin, xmax, ymax
    keypoints: np.ndarray  # (N, K, 2) x, y: keypoint 0 the hip centre, 1 the body-size point
    scores: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.scores)


def decode_detections(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    *,
    scale: float = DETECTOR_SIZE,
    num_keypoints: int = 4,
    min_score: float = MIN_DETECTION_SCORE,
) -> Detections:
    """The detector's raw (N, 12) and (N, 1) outputs -> the detections scoring at least ``min_score``."""
    raw = np.asarray(raw_boxes, np.float32).reshape(len(anchors), -1)
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(len(anchors)), -100.0, 100.0)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)  # float64: exp(100) overflows float32
    keep = scores >= min_score
    raw, a, scores = raw[keep], anchors[keep], scores[keep]
    cx = raw[:, 0] / scale * a[:, 2] + a[:, 0]
    cy = raw[:, 1] / scale * a[:, 3] + a[:, 1]
    w = raw[:, 2] / scale * a[:, 2]
    h = raw[:, 3] / scale * a[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = raw[:, 4 : 4 + 2 * num_keypoints].reshape(-1, num_keypoints, 2)
    kp = kp / scale * a[:, None, 2:4] + a[:, None, 0:2]
    return Detections(boxes.astype(np.float32), kp.astype(np.float32), scores.astype(np.float32))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with (N, 4) boxes (xmin, ymin, xmax, ymax)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(dets: Detections, threshold: float = NMS_IOU) -> Detections:
    """MediaPipe's WEIGHTED non-max suppression: each cluster (IoU > threshold with its best
    member) becomes one detection, its box and keypoints the score-weighted mean, its score the best's."""
    order = list(np.argsort(-dets.scores, kind="stable"))
    boxes, kps, scores = [], [], []
    while order:
        top = order[0]
        overlap = iou(dets.boxes[top], dets.boxes[order])
        members = [order[i] for i in range(len(order)) if overlap[i] > threshold or order[i] == top]
        order = [i for i in order if i not in members]
        w = dets.scores[members][:, None]
        boxes.append((dets.boxes[members] * w).sum(0) / w.sum())
        kps.append((dets.keypoints[members] * w[:, :, None]).sum(0) / w.sum())
        scores.append(dets.scores[top])
    if not scores:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros((0,) + dets.keypoints.shape[1:], np.float32), dets.scores[:0]
        )
    return Detections(np.asarray(boxes, np.float32), np.asarray(kps, np.float32), np.asarray(scores, np.float32))


@dataclass(frozen=True)
class Letterbox:
    """How a (height, width) frame sits in the detector's square: scaled by ``scale``, centred with padding."""

    scale: float
    pad_x: float
    pad_y: float
    size: int = DETECTOR_SIZE

    @classmethod
    def fit(cls, height: int, width: int, size: int = DETECTOR_SIZE) -> Letterbox:
        s = size / max(height, width)
        return cls(s, (size - width * s) / 2, (size - height * s) / 2, size)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Points (..., 2) normalised to the square -> pixels of the original frame."""
        p = np.asarray(points, np.float32) * self.size
        return np.stack([(p[..., 0] - self.pad_x) / self.scale, (p[..., 1] - self.pad_y) / self.scale], axis=-1)


@dataclass(frozen=True)
class Roi:
    """An axis-aligned square crop in frame pixels: centre and side."""

    cx: float
    cy: float
    side: float

    def to_frame(self, points: np.ndarray, size: int = LANDMARK_SIZE) -> np.ndarray:
        """Points (..., 2) in pixels of the ``size`` x ``size`` crop -> frame pixels."""
        p = np.asarray(points, np.float32)
        k = self.side / size
        return np.stack([p[..., 0] * k + self.cx - self.side / 2, p[..., 1] * k + self.cy - self.side / 2], axis=-1)

    def affine(self, size: int = LANDMARK_SIZE) -> np.ndarray:
        """The 2 x 3 matrix mapping frame pixels into the crop (for ``cv2.warpAffine``)."""
        k = size / self.side
        return np.asarray(
            [[k, 0.0, -(self.cx - self.side / 2) * k], [0.0, k, -(self.cy - self.side / 2) * k]], np.float32
        )


def roi_from_points(
    center: Sequence[float] | np.ndarray, size_point: Sequence[float] | np.ndarray, scale: float = ROI_SCALE
) -> Roi:
    """The square around a person from two points in frame pixels (hip centre, body-size point)."""
    c, s = np.asarray(center, np.float64), np.asarray(size_point, np.float64)
    side = 2.0 * float(np.hypot(*(s - c))) * scale
    return Roi(float(c[0]), float(c[1]), side)


def keypoint_features(keypoints: np.ndarray | None) -> np.ndarray:
    """(33, 4) landmarks (x, y, z in frame pixels, visibility 0..1), or None -> the (133,) feature vector.

    Centred on the hip centre, divided by the torso length (so the camera's distance and the
    person's place in the picture drop out), clipped to +-FEATURE_CLIP, visibility kept, flag 1.
    None (no person, or a degenerate torso) gives zeros with flag 0.
    """
    out = np.zeros(FEATURE_DIM, np.float32)
    if keypoints is None:
        return out
    kp = np.asarray(keypoints, np.float32)
    if kp.shape != (NUM_LANDMARKS, LANDMARK_VALUES):
        raise ValueError(f"keypoints must be ({NUM_LANDMARKS}, {LANDMARK_VALUES}), got {kp.shape}")
    hips = (kp[LEFT_HIP, :2] + kp[RIGHT_HIP, :2]) / 2
    shoulders = (kp[LEFT_SHOULDER, :2] + kp[RIGHT_SHOULDER, :2]) / 2
    torso = float(np.hypot(*(shoulders - hips)))
    if not np.isfinite(torso) or torso < 1e-3:
        return out
    xyz = np.empty((NUM_LANDMARKS, 3), np.float32)
    xyz[:, :2] = (kp[:, :2] - hips) / torso
    xyz[:, 2] = kp[:, 2] / torso
    feats = np.concatenate([np.clip(xyz, -FEATURE_CLIP, FEATURE_CLIP), np.clip(kp[:, 3:4], 0.0, 1.0)], axis=1)
    out[:-1] = feats.reshape(-1)
    out[-1] = 1.0
    return out


def person_present(features: np.ndarray) -> np.ndarray:
    """The flag of (..., FEATURE_DIM) features: True where the frame had a person."""
    return np.asarray(features)[..., FEATURE_DIM - 1] > 0.5
