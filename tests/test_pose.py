"""The pose arithmetic (edge_har.core.pose) on numbers worked out by hand; no pose model needed.

Anchors, box and keypoint decoding, weighted NMS, the letterbox, the rotated crop and its
inverse, the heatmap refinement, the tracking points' one-euro filter and the keypoint
features each get inputs whose right answer is known, so a sign, an axis order or a scale
that drifts from MediaPipe's calculators fails here (tests/test_pose_golden.py compares
the whole encoder with MediaPipe itself). The command-line checks of
``--backbone pose`` run before TensorFlow is imported.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_har.core import pose

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- anchors


def test_blazepose_anchor_layout():
    a = pose.ssd_anchors()
    # 28x28 cells x 2 (stride 8) + 14x14 x 2 (stride 16) + 7x7 x 6 (three stride-32 layers share one map)
    assert a.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 4) == (2254, 4)
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28, 1, 1], atol=1e-6)
    np.testing.assert_allclose(a[1], a[0])  # the interpolated-scale anchor sits on the same cell
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28, 1, 1], atol=1e-6)  # x runs fastest
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14, 1, 1], atol=1e-6)  # first stride-16 anchor
    np.testing.assert_allclose(a[1568 + 392 : 1568 + 392 + 6, :2], [[0.5 / 7, 0.5 / 7]] * 6, atol=1e-6)
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7, 1, 1], atol=1e-6)


def test_anchor_sizes_without_fixed_size_follow_the_scale_ladder():
    a = pose.ssd_anchors(pose.AnchorOptions(fixed_anchor_size=False))
    s0 = 0.1484375
    s1 = s0 + (0.75 - s0) / 4
    np.testing.assert_allclose(a[0, 2:], [s0, s0], atol=1e-6)
    np.testing.assert_allclose(a[1, 2:], [np.sqrt(s0 * s1)] * 2, atol=1e-6)
    # the last layer interpolates towards scale 1.0
    np.testing.assert_allclose(a[-1, 2:], [np.sqrt(0.75 * 1.0)] * 2, atol=1e-6)


# ---------------------------------------------------------------- decoding and NMS


def _raw(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 12), np.float32), np.full((n, 1), -20.0, np.float32)


def test_decode_detections_scales_offsets_by_the_anchor_and_filters_by_score():
    anchors = np.array([[0.5, 0.5, 1, 1], [0.25, 0.75, 1, 1], [0.1, 0.1, 1, 1]], np.float32)
    boxes, scores = _raw(3)
    boxes[0, :4] = [22.4, -44.8, 44.8, 89.6]  # cx +0.1, cy -0.2, w 0.2, h 0.4 (in 224 px units)
    boxes[0, 4:6] = [0.0, 22.4]  # keypoint 0 at the anchor + (0, 0.1)
    boxes[0, 6:8] = [-22.4, 0.0]  # keypoint 1 at the anchor - (0.1, 0)
    scores[0] = 0.0  # sigmoid 0.5: kept at threshold 0.5
    boxes[1, :4] = [0, 0, 22.4, 22.4]
    scores[1] = 3.0
    scores[2] = -0.1  # 0.475: dropped
    d = pose.decode_detections(boxes, scores, anchors)
    assert len(d) == 2
    np.testing.assert_allclose(d.boxes[0], [0.5, 0.1, 0.7, 0.5], atol=1e-6)
    np.testing.assert_allclose(d.keypoints[0, 0], [0.5, 0.6], atol=1e-6)
    np.testing.assert_allclose(d.keypoints[0, 1], [0.4, 0.5], atol=1e-6)
    np.testing.assert_allclose(d.scores, [0.5, 1 / (1 + np.exp(-3.0))], atol=1e-6)
    np.testing.assert_allclose(d.boxes[1], [0.2, 0.7, 0.3, 0.8], atol=1e-6)


def test_decode_clips_huge_logits_without_overflow():
    boxes, scores = _raw(2)
    scores[:, 0] = [1e6, -1e6]
    with np.errstate(over="raise"):
        d = pose.decode_detections(boxes, scores, np.zeros((2, 4), np.float32))
    assert len(d) == 1 and d.scores[0] == pytest.approx(1.0)


def test_weighted_nms_merges_a_cluster_by_score_and_keeps_the_best_score():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [5.0, 5.0, 6.0, 6.0]], np.float32)
    kps = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[5.5, 5.5]]], np.float32)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    out = pose.weighted_nms(pose.Detections(boxes, kps, scores))
    assert len(out) == 2
    np.testing.assert_allclose(out.scores, [0.9, 0.7])
    # IoU(0, 1) = 0.9 / 1.1 > 0.3: one cluster, weighted by 0.9 and 0.6
    np.testing.assert_allclose(out.boxes[0], [0.06, 0.0, 1.06, 1.0], atol=1e-6)
    np.testing.assert_allclose(out.keypoints[0, 0], [0.6, 0.6], atol=1e-6)
    np.testing.assert_allclose(out.boxes[1], boxes[2])


def test_weighted_nms_of_nothing_is_nothing():
    empty = pose.Detections(np.zeros((0, 4), np.float32), np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32))
    assert len(pose.weighted_nms(empty)) == 0


def test_iou_of_known_boxes():
    a = np.array([0, 0, 2, 2], np.float32)
    np.testing.assert_allclose(
        pose.iou(a, np.array([[1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 2, 2]], np.float32)), [1 / 7, 0, 1]
    )


# ---------------------------------------------------------------- geometry


def test_letterbox_of_a_4_3_frame():
    box = pose.Letterbox.fit(240, 320)
    assert (box.scale, box.pad_x, box.pad_y) == (pytest.approx(0.7), 0.0, pytest.approx(28.0))
    np.testing.assert_allclose(box.to_frame(np.array([[0.5, 0.5], [0.0, 28 / 224]])), [[160, 120], [0, 0]], atol=1e-4)


def test_letterbox_affine_is_the_inverse_of_to_frame():
    box = pose.Letterbox.fit(240, 320)
    m = box.affine()
    np.testing.assert_allclose(m, [[0.7, 0, 0], [0, 0.7, 28]], atol=1e-6)
    frame_points = np.array([[0.0, 0.0], [320.0, 240.0], [100.0, 50.0]])
    square = np.c_[frame_points, np.ones(3)] @ m.T
    np.testing.assert_allclose(square, [[0, 28], [224, 196], [70, 63]], atol=1e-4)
    np.testing.assert_allclose(box.to_frame(square / 224), frame_points, atol=1e-3)
    portrait = pose.Letterbox.fit(320, 240)  # a frame turned on its side: padding left and right
    assert (portrait.pad_x, portrait.pad_y) == (pytest.approx(28.0), 0.0)


def test_upright_roi_and_its_crop_mapping():
    roi = pose.roi_from_points((100.0, 100.0), (100.0, 60.0))  # size point straight above the hips
    assert (roi.cx, roi.cy, roi.side) == (100.0, 100.0, pytest.approx(100.0))  # 2 x 40 px x 1.25
    assert roi.rotation == pytest.approx(0.0)
    m = roi.affine(256)
    corners = np.array([[50.0, 50.0, 1.0], [150.0, 150.0, 1.0]]) @ m.T
    np.testing.assert_allclose(corners, [[0, 0], [256, 256]], atol=1e-4)
    np.testing.assert_allclose(roi.to_frame(np.array([[0.0, 0.0], [128.0, 128.0]])), [[50, 50], [100, 100]], atol=1e-4)


@pytest.mark.parametrize(
    "size_point, rotation, crop_top_in_frame",
    [
        ((140.0, 100.0), np.pi / 2, (150.0, 100.0)),  # lying, head to the right: the crop's top is the frame's right
        ((60.0, 100.0), -np.pi / 2, (50.0, 100.0)),  # lying, head to the left
        ((100.0, 140.0), -np.pi, (100.0, 150.0)),  # upside down ([-pi, pi), as NormalizeRadians)
        ((100.0 + 40 / np.sqrt(2), 100.0 - 40 / np.sqrt(2)), np.pi / 4, (100 + 50 / np.sqrt(2), 100 - 50 / np.sqrt(2))),
    ],
)
def test_rotated_roi_turns_the_body_upright_in_the_crop(size_point, rotation, crop_top_in_frame):
    # AlignmentPointsRectsCalculator: rotation = 90 deg - atan2(-(y1 - y0), x1 - x0), image y down
    roi = pose.roi_from_points((100.0, 100.0), size_point)
    assert roi.side == pytest.approx(100.0) and roi.rotation == pytest.approx(rotation)
    # the middle of the crop's top edge is 50 px (half the side) from the centre, towards the head
    np.testing.assert_allclose(roi.to_frame(np.array([128.0, 0.0])), crop_top_in_frame, atol=1e-3)
    # and the size point itself lands straight above the crop's centre, 40 / 100 of the side up
    m = roi.affine(256)
    np.testing.assert_allclose(m @ [*size_point, 1.0], [128.0, 128.0 - 0.4 * 256], atol=1e-3)


def test_crop_points_round_trip_through_the_rotation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        roi = pose.Roi(*rng.uniform(0, 300, 2), rng.uniform(20, 400), rng.uniform(-np.pi, np.pi))
        crop = rng.uniform(-50, 300, (33, 2))
        frame = roi.to_frame(crop)
        back = np.c_[frame, np.ones(len(frame))] @ roi.affine().T
        np.testing.assert_allclose(back, crop, atol=2e-3)


def test_rotated_crop_corners_are_mediapipes_box_points():
    """ImageToTensorCalculator maps cv::boxPoints of the rotated rect onto the tensor's corners
    (bottom-left, top-left, top-right, bottom-right); Roi.affine must do the same."""
    cv2 = pytest.importorskip("cv2")
    roi = pose.Roi(120.0, 90.0, 80.0, 0.6)
    box = cv2.boxPoints(((roi.cx, roi.cy), (roi.side, roi.side), np.degrees(roi.rotation)))
    mapped = np.c_[box, np.ones(4)] @ roi.affine(256).T
    np.testing.assert_allclose(mapped, [[0, 256], [0, 0], [256, 0], [256, 256]], atol=1e-3)


def test_normalize_radians():
    assert pose.normalize_radians(np.pi) == pytest.approx(-np.pi)
    assert pose.normalize_radians(3 * np.pi / 2) == pytest.approx(-np.pi / 2)
    assert pose.normalize_radians(-np.pi / 4) == pytest.approx(-np.pi / 4)


# ---------------------------------------------------------------- heatmap refinement and the ROI filter


def test_refine_from_heatmap_moves_a_confident_landmark_to_the_weighted_cell():
    hm = np.full((64, 64, 4), -100.0, np.float32)  # sigmoid ~0 everywhere
    hm[10, 20, 0] = hm[10, 22, 0] = 100.0  # two sure cells: the mean is column 21, row 10
    hm[30, 30, 1] = -1.0  # sigmoid 0.27: below min confidence 0.5, the landmark stays
    hm[0, 3, 3] = 100.0  # landmark 3 sits just left of the heatmap: int() truncates -0.32 to column 0
    pts = np.array([[20.5 / 64, 10.5 / 64], [30.5 / 64, 30.5 / 64], [1.2, 0.5], [-0.005, 0.01]], np.float32)
    out = pose.refine_from_heatmap(pts, hm)
    # MediaPipe divides the mean cell index by the size (no half-cell offset): 21 / 64, not 21.5 / 64
    np.testing.assert_allclose(out[0], [21 / 64, 10 / 64], atol=1e-6)
    np.testing.assert_allclose(out[1], pts[1])
    np.testing.assert_allclose(out[2], pts[2])  # outside the heatmap: kept
    np.testing.assert_allclose(out[3], [3 / 64, 0.0], atol=1e-6)  # kernel cut at the edge, column 3 within 0..3


def test_refine_from_heatmap_only_looks_within_the_kernel():
    hm = np.full((64, 64, 1), -100.0, np.float32)
    hm[10, 24, 0] = 100.0  # 4 columns away: outside a 7-wide kernel (3 each side)
    pts = np.array([[20.5 / 64, 10.5 / 64]], np.float32)
    np.testing.assert_allclose(pose.refine_from_heatmap(pts, hm), pts)
    with pytest.raises(ValueError, match="1 layers for 2 landmarks"):
        pose.refine_from_heatmap(np.zeros((2, 2)), hm)


def test_one_euro_filter_by_hand():
    f = pose.OneEuroFilter()  # min cutoff 0.01, beta 10, derivative cutoff 1, 30 frames/s
    assert f.apply(np.array([0.0]), 1.0)[0] == 0.0  # the first value passes through
    # second: derivative 1 / (1/30) = 30 per s; alpha(1 Hz) = 1 / (1 + 30 / (2 pi)) = 0.173177
    # filtered derivative 5.19531; cutoff 0.01 + 10 x 5.19531 = 51.9631 Hz; alpha = 1 / (1 + 30 / (2 pi 51.9631))
    a_d = 1 / (1 + 30 / (2 * np.pi))
    cutoff = 0.01 + 10 * a_d * 30
    a = 1 / (1 + 30 / (2 * np.pi * cutoff))
    assert f.apply(np.array([1.0]), 1.0)[0] == pytest.approx(a, rel=1e-4) == pytest.approx(0.91583, abs=1e-4)
    f.reset()
    assert f.apply(np.array([5.0]), 1.0)[0] == 5.0
    steady = [f.apply(np.array([5.0]), 1.0)[0] for _ in range(3)]
    assert steady == [5.0, 5.0, 5.0]


def test_one_euro_filter_smooths_a_jitter_relative_to_the_object_size():
    values = np.array([100.0, 101.0, 100.0, 101.0, 100.0])
    small, large = pose.OneEuroFilter(), pose.OneEuroFilter()
    out_small = [small.apply(np.array([v]), 1 / 10.0)[0] for v in values]  # a 10 px person: 1 px is a lot
    out_large = [large.apply(np.array([v]), 1 / 1000.0)[0] for v in values]  # a 1000 px person: 1 px is noise
    assert np.ptp(out_large[1:]) < np.ptp(out_small[1:]) < 1.0


# ---------------------------------------------------------------- features


def _skeleton() -> np.ndarray:
    kp = np.zeros((33, 4), np.float32)
    kp[:, :2] = (110.0, 200.0)
    kp[:, 3] = 0.8
    kp[pose.LEFT_HIP, :2], kp[pose.RIGHT_HIP, :2] = (100, 200), (120, 200)
    kp[pose.LEFT_SHOULDER, :2], kp[pose.RIGHT_SHOULDER, :2] = (100, 100), (120, 100)  # torso 100 px
    kp[0] = (110, 50, 25, 0.9)  # nose 1.5 torso lengths above the hips, z 0.25
    kp[15] = (2000, 200, 0, 0.1)  # a wrist far out: clipped
    return kp


def test_keypoint_features_centre_on_the_hips_and_scale_by_the_torso():
    f = pose.keypoint_features(_skeleton())
    assert f.shape == (pose.FEATURE_DIM,) == (133,)
    per = f[:-1].reshape(33, 4)
    np.testing.assert_allclose(per[0], [0.0, -1.5, 0.25, 0.9], atol=1e-6)
    np.testing.assert_allclose(per[pose.LEFT_SHOULDER], [-0.1, -1.0, 0.0, 0.8], atol=1e-6)
    assert per[15, 0] == pose.FEATURE_CLIP  # (2000 - 110) / 100 clipped
    assert f[-1] == 1.0 and pose.person_present(f)


def test_keypoint_features_ignore_where_and_how_big_the_person_is():
    kp = _skeleton()
    moved = kp.copy()
    moved[:, :3] = moved[:, :3] * 2.5
    moved[:, :2] += (40.0, -30.0)
    np.testing.assert_allclose(pose.keypoint_features(moved), pose.keypoint_features(kp), atol=1e-5)


def test_no_person_and_a_degenerate_torso_are_an_explicit_mask():
    assert not pose.keypoint_features(None).any()
    flat = _skeleton()
    flat[[pose.LEFT_SHOULDER, pose.RIGHT_SHOULDER], :2] = flat[[pose.LEFT_HIP, pose.RIGHT_HIP], :2]
    f = pose.keypoint_features(flat)
    assert not f.any() and not pose.person_present(f)
    with pytest.raises(ValueError, match=r"\(33, 4\)"):
        pose.keypoint_features(np.zeros((17, 3)))


# ---------------------------------------------------------------- the command line and the models folder


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\nfrom edge_har.cli import main\nrc = main(sys.argv[1:])\n"
        "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED')\nsys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "convert-video", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_backbone_pose_without_models_fails_before_tensorflow(tmp_path):
    r = _cli("--data", str(tmp_path), "--backbone", "pose", "--out", str(tmp_path / "b"))
    assert r.returncode == 2, r.stderr
    assert "--backbone pose needs --pose-models DIR" in r.stderr and "get_pose_models.sh" in r.stderr
    assert "TF-NOT-LOADED" in r.stdout


def test_pose_models_folder_missing_a_file_or_with_a_wrong_hash_is_named(tmp_path):
    models = tmp_path / "pose"
    models.mkdir()
    (models / "pose_detection.tflite").write_bytes(b"x")
    r = _cli("--data", str(tmp_path), "--backbone", "pose", "--pose-models", str(models))
    assert r.returncode == 2 and "missing pose_landmark_full.tflite, LICENSE.mediapipe" in r.stderr
    assert "TF-NOT-LOADED" in r.stdout
    for name in ("pose_landmark_full.tflite", "LICENSE.mediapipe"):
        (models / name).write_bytes(b"y")
    record = {"files": {"detector": {"file": "pose_detection.tflite", "sha256": hashlib.sha256(b"other").hexdigest()}}}
    (models / "pose_models.json").write_text(json.dumps(record))
    r = _cli("--data", str(tmp_path), "--backbone", "pose", "--pose-models", str(models))
    assert r.returncode == 2 and "pose_detection.tflite: sha256" in r.stderr and "records" in r.stderr


def test_bad_pose_frame_is_a_one_line_error(tmp_path):
    r = _cli("--data", str(tmp_path), "--backbone", "pose", "--pose-models", str(tmp_path), "--pose-frame", "big")
    assert r.returncode == 2 and "--pose-frame 'big': expected WIDTHxHEIGHT" in r.stderr


def test_pose_models_flag_needs_the_pose_backbone(tmp_path):
    r = _cli("--data", str(tmp_path), "--backbone", "plain", "--pose-models", str(tmp_path))
    assert r.returncode == 2 and "--pose-models is for --backbone pose" in r.stderr
