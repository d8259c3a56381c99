"""BlazePose arithmetic shared by training and the device: anchors, box decoding, NMS, rotated crops, keypoint features.

The pose encoder (``edge_har.core.pose_encoder``) runs MediaPipe's two BlazePose
``.tflite`` models with LiteRT; MediaPipe itself (its graphs, calculators, protobuf pin)
is never installed. What its graphs do around the two models is re-done here, in
numpy, from the options MediaPipe's ``pose_detection_cpu``, ``pose_landmark_cpu``,
``pose_landmark_by_roi_cpu``, ``pose_detection_to_roi``, ``pose_landmarks_to_roi``,
``pose_landmark_filtering`` and ``tensors_to_pose_landmarks_and_segmentation`` graphs give
their calculators, so the landmarks are MediaPipe's (tests/test_pose_golden.py measures
the distance to MediaPipe 0.10.14's own output):

* :func:`ssd_anchors`: ``SsdAnchorsCalculator`` (5 layers, strides 8, 16, 32, 32, 32,
  scales 0.1484375..0.75, fixed anchor size): 2254 anchors for a 224 x 224 input.
* :class:`Letterbox`: the detector's ``ImageToTensorCalculator`` (keep aspect ratio, zero
  border) and ``DetectionLetterboxRemovalCalculator``.
* :func:`decode_detections`: ``TensorsToDetectionsCalculator`` (12 numbers per
  anchor: box centre x, y, width, height, then 4 keypoints x, y; reverse output
  order; scale 224; sigmoid scores clipped at +-100; score threshold 0.5).
* :func:`weighted_nms`: ``NonMaxSuppressionCalculator`` (IoU 0.3, WEIGHTED).
* :func:`roi_from_points` and :class:`Roi`: ``AlignmentPointsRectsCalculator`` (keypoints 0
  and 1, target angle 90 degrees) + ``RectTransformationCalculator`` (scale 1.25,
  square_long): a square centred on the hip centre, side 2 x 1.25 x the distance to the
  body-size point, turned so the body stands upright in the crop (a person lying down is
  cropped as one standing up, which is what the landmark model was trained on). The same
  for the detector's keypoints and for the landmark model's two auxiliary points that
  track the person into the next frame. :meth:`Roi.to_frame` is
  ``LandmarkProjectionCalculator``, :meth:`Roi.affine` the crop it inverts.
* :func:`refine_from_heatmap`: ``RefineLandmarksFromHeatmapCalculator`` (kernel 7,
  min confidence 0.5) over the full model's 64 x 64 x 39 heatmap.
* :class:`OneEuroFilter`: the filter the landmark graph always runs over the two
  auxiliary points before they become the next crop (min cutoff 0.01, beta 10). The 33
  body landmarks themselves are not smoothed: each frame's keypoints are that frame's.
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
from typing import Optional, Sequence

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
ROI_TARGET_ANGLE = math.pi / 2  # the hip -> size-point vector points up in the crop
RETRY_ROI_SCALE = 1.4  # the encoder's second look when a detector crop gives no person
HEATMAP_KERNEL = 7  # RefineLandmarksFromHeatmapCalculatorOptions.kernel_size in MediaPipe's pose graph
HEATMAP_MIN_CONFIDENCE = 0.5  # its min_confidence_to_refine (the option's default; the graph leaves it)
ROI_FILTER_MIN_CUTOFF, ROI_FILTER_BETA, ROI_FILTER_DERIVATE_CUTOFF = 0.01, 10.0, 1.0  # the aux points' one-euro filter
ROI_FILTER_STEP_S = 0.033333  # seconds between frames as MediaPipe's Python solution stamps them (30 fps)
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

    def affine(self) -> np.ndarray:
        """The 2 x 3 matrix mapping frame pixels into the square (for ``cv2.warpAffine``, pixel-corner convention)."""
        return np.asarray([[self.scale, 0.0, self.pad_x], [0.0, self.scale, self.pad_y]], np.float32)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Points (..., 2) normalised to the square -> pixels of the original frame (``DetectionLetterboxRemoval``)."""
        p = np.asarray(points, np.float32) * self.size
        return np.stack([(p[..., 0] - self.pad_x) / self.scale, (p[..., 1] - self.pad_y) / self.scale], axis=-1)


@dataclass(frozen=True)
class Roi:
    """A square crop in frame pixels: centre, side and rotation.

    ``rotation`` (radians) is MediaPipe's ``NormalizedRect.rotation``: the crop's "up" is the
    frame's up turned by it, clockwise on screen (image y grows downwards), so a person lying
    with the head to the right gets pi/2 and appears upright in the crop.
    """

    cx: float
    cy: float
    side: float
    rotation: float = 0.0

    def to_frame(self, points: np.ndarray, size: int = LANDMARK_SIZE) -> np.ndarray:
        """Points (..., 2) in pixels of the ``size`` x ``size`` crop -> frame pixels.

        ``LandmarkProjectionCalculator``: centre the point on the crop, turn it by the rotation,
        scale to the side, add the centre.
        """
        p = np.asarray(points, np.float64) / size - 0.5
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        x = (c * p[..., 0] - s * p[..., 1]) * self.side + self.cx
        y = (s * p[..., 0] + c * p[..., 1]) * self.side + self.cy
        return np.stack([x, y], axis=-1).astype(np.float32)

    def affine(self, size: int = LANDMARK_SIZE) -> np.ndarray:
        """The 2 x 3 matrix mapping frame pixels into the crop (for ``cv2.warpAffine``): the inverse of ``to_frame``.

        The crop's corners are the rotated square's corners (pixel-corner convention), as
        ``ImageToTensorCalculator`` maps ``cv::boxPoints`` of the rect onto the tensor.
        """
        k = size / self.side
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        m = np.asarray([[c * k, s * k], [-s * k, c * k]], np.float64)  # R(-rotation) scaled
        t = size / 2.0 - m @ np.asarray([self.cx, self.cy], np.float64)
        return np.concatenate([m, t[:, None]], axis=1).astype(np.float32)


def normalize_radians(angle: float) -> float:
    """An angle in [-pi, pi), as MediaPipe's ``NormalizeRadians``."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_points(
    center: Sequence[float] | np.ndarray,
    size_point: Sequence[float] | np.ndarray,
    scale: float = ROI_SCALE,
    target_angle: float = ROI_TARGET_ANGLE,
) -> Roi:
    """The rotated square around a person from two points in frame pixels (hip centre, body-size point).

    ``AlignmentPointsRectsCalculator`` (keypoint 0 -> 1, target angle 90 degrees): centre on
    the first point, side twice their distance, rotation ``target - atan2(-dy, dx)`` so the
    vector hip -> size point points up in the crop; then ``RectTransformationCalculator``
    (``square_long``, scale 1.25). Pixels, not normalised coordinates: the square stays square
    in a frame of any aspect ratio, as ``square_long`` makes it.
    """
    c, s = np.asarray(center, np.float64), np.asarray(size_point, np.float64)
    dx, dy = float(s[0] - c[0]), float(s[1] - c[1])
    side = 2.0 * math.hypot(dx, dy) * scale
    rotation = normalize_radians(target_angle - math.atan2(-dy, dx))
    return Roi(float(c[0]), float(c[1]), side, rotation)


def refine_from_heatmap(
    points: np.ndarray,
    heatmap: np.ndarray,
    kernel_size: int = HEATMAP_KERNEL,
    min_confidence: float = HEATMAP_MIN_CONFIDENCE,
) -> np.ndarray:
    """``RefineLandmarksFromHeatmapCalculator``: (N, 2) landmarks normalised to the crop, refined by an (H, W, N) heatmap.

    Per landmark, the kernel_size x kernel_size window of the heatmap (logits; sigmoid here)
    around the landmark's cell, cut at the heatmap's edges: when its largest confidence
    reaches ``min_confidence``, the landmark moves to the confidence-weighted mean cell index
    divided by the heatmap size. MediaPipe's arithmetic exactly: the cell is the truncated
    (towards zero) product, the mean uses cell indices (no half-cell offset), and a landmark
    outside the heatmap stays where it is.
    """
    pts = np.asarray(points, np.float32)
    hm = np.asarray(heatmap, np.float32)
    height, width, channels = hm.shape
    if channels != len(pts):
        raise ValueError(f"heatmap has {channels} layers for {len(pts)} landmarks")
    out = pts.copy()
    offset = (kernel_size - 1) // 2
    for i in range(len(pts)):
        col, row = int(float(pts[i, 0]) * width), int(float(pts[i, 1]) * height)  # int(): truncates as C++ does
        if col < 0 or col >= width or row < 0 or row >= height:
            continue
        r0, r1 = max(0, row - offset), min(height, row + offset + 1)
        c0, c1 = max(0, col - offset), min(width, col + offset + 1)
        conf = 1.0 / (1.0 + np.exp(-hm[r0:r1, c0:c1, i].astype(np.float64)))
        total = float(conf.sum())
        if total > 0 and float(conf.max()) >= min_confidence:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i, 0] = float((cols * conf).sum()) / width / total
            out[i, 1] = float((rows * conf).sum()) / height / total
    return out


class OneEuroFilter:
    """MediaPipe's ``OneEuroFilter`` (as ``LandmarksSmoothingCalculator`` runs it) over an array of values.

    The pose graph runs one over the two auxiliary ROI points whatever ``smooth_landmarks``
    says (min cutoff 0.01, beta 10, derivative cutoff 1, value scale 1 / the points' box
    size in pixels): the next frame's crop comes from the filtered points, which keeps it
    steady while the 33 body landmarks stay per frame. ``step`` is the time between frames:
    MediaPipe's Python solution stamps frames 33333 us apart whatever the video's rate.
    """

    def __init__(
        self,
        min_cutoff: float = ROI_FILTER_MIN_CUTOFF,
        beta: float = ROI_FILTER_BETA,
        derivate_cutoff: float = ROI_FILTER_DERIVATE_CUTOFF,
        step: float = ROI_FILTER_STEP_S,
    ) -> None:
        self.min_cutoff, self.beta, self.derivate_cutoff, self.step = min_cutoff, beta, derivate_cutoff, step
        self.reset()

    def reset(self) -> None:
        """Forget the past (MediaPipe resets when a frame has no landmarks)."""
        self._value: Optional[np.ndarray] = None  # the filtered value
        self._raw: Optional[np.ndarray] = None  # the last raw value
        self._derivative: Optional[np.ndarray] = None  # the filtered derivative

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray:
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
        return np.asarray(1.0 / (1.0 + tau / self.step))

    def apply(self, value: np.ndarray, value_scale: float) -> np.ndarray:
        """The filtered ``value`` (any shape, every element filtered on its own): the first one passes through."""
        x = np.asarray(value, np.float64)
        if self._value is None or self._raw is None or self._derivative is None:
            self._value, self._raw, self._derivative = x.copy(), x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._raw) * value_scale / self.step
        a = self._alpha(self.derivate_cutoff)
        self._derivative = a * dx + (1.0 - a) * self._derivative
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._derivative))
        self._value = a * x + (1.0 - a) * self._value
        self._raw = x.copy()
        return self._value.copy()


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
