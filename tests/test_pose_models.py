"""The pose encoder with the real BlazePose models, and a real pose conversion streamed as the device does.

Marked ``pose``: the models come from the mediapipe wheel through scripts/get_pose_models.sh
(PyPI), into $EDGE_HAR_POSE_MODELS or ~/.cache/edge-har/pose. Without them a test is
skipped, except in CI (CI=true), where a missing model is a failure: .ci/run fetches
them and runs ``pytest -m pose``. The frames are a drawn person (convert/pose_synthetic.py),
never real footage.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.pose_synthetic import draw_person, write_pose_dataset
from edge_har.core import pose
from tests import pose_bundles

pytestmark = pytest.mark.pose
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pose_models_dir() -> Path:
    """The BlazePose models, fetched once with the project's own script (skipped without them, failed in CI)."""
    return pose_bundles.pose_models_dir()


@pytest.fixture(scope="module")
def encoder(pose_models_dir):
    from edge_har.core.interpreter import TFLiteModel
    from edge_har.core.pose_encoder import PoseEncoder

    return PoseEncoder(
        TFLiteModel(pose_models_dir / "pose_detection.tflite"),
        TFLiteModel(pose_models_dir / "pose_landmark_full.tflite"),
    )


def rgb01(bgr: np.ndarray) -> np.ndarray:
    return bgr[..., ::-1].astype(np.float32) / 255.0


def test_the_script_records_what_it_extracted(pose_models_dir):
    import json

    from edge_har.core.interpreter import sha256_file

    meta = json.loads((pose_models_dir / "pose_models.json").read_text())
    assert meta["licence"] == "Apache-2.0" and "mediapipe==0.10.14" in meta["source"]
    for entry in meta["files"].values():
        assert sha256_file(pose_models_dir / entry["file"]) == entry["sha256"]
    assert "Apache License" in (pose_models_dir / "LICENSE.mediapipe").read_text()


def test_encoder_finds_the_drawn_person_and_follows_the_arms(encoder):
    encoder.reset()
    wrists_y = []
    for arm in (0.0, 0.5, 1.0):
        encoder.reset()
        result = encoder.process(rgb01(draw_person(arm)))
        assert result.keypoints is not None and result.score > 0.9
        nose = result.keypoints[0, :2]
        assert abs(nose[0] - 160) < 15 and abs(nose[1] - 50) < 15  # the drawn head is at (160, 50)
        wrists_y.append(result.keypoints[[15, 16], 1].mean())
        assert pose.person_present(result.features)
    assert wrists_y[0] > wrists_y[1] + 10 > wrists_y[2] + 20  # image y grows downwards: arms up, wrists up


def test_tracking_skips_the_detector_and_no_person_is_counted(encoder):
    encoder.reset()
    before = encoder.counters.to_json()
    frames = [draw_person(0.2 * i) for i in range(4)]
    for f in frames:
        encoder.process(rgb01(f))
    mid = encoder.counters.to_json()
    assert mid["detector_runs"] - before["detector_runs"] == 1  # the first frame only; then the track
    assert mid["landmark_runs"] - before["landmark_runs"] == 4
    blank = encoder.process(rgb01(np.full_like(frames[0], 170)))
    assert blank.keypoints is None and not blank.features.any()
    assert encoder.counters.frames_no_person == mid["frames_no_person"] + 1


@pytest.mark.slow
def test_pose_conversion_bundle_and_device_stream(
    pose_models_dir, tmp_path, monkeypatch, mosquitto_broker, mqtt_listener
):
    """A real --backbone pose conversion on drawn clips (wave vs still), then the bundle streamed frame by frame."""
    from edge_har.convert.pose_pipeline import PoseOptions
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video
    from edge_har.core.bundle import Bundle
    from edge_har.core.interpreter import sha256_file
    from edge_har.core.video_models import VideoModels
    from edge_har.device.video_runtime import VideoRuntime

    data = write_pose_dataset(tmp_path / "data", {"wave": 3, "still": 3}, frames=40, fps=10.0)
    options = VideoConvertOptions(
        out=tmp_path / "bundle",
        data=data,
        split_options={"by": "clip", "test_fraction": 0.34, "val_fraction": 0.0, "seed": 1},
        fps=10.0,
        stride=4,
        model=VideoModelConfig(backbone="plain", weights="none", frames=8, lstm_units=(16,)),
        train=TrainConfig(epochs=40, batch_size=16, patience=40, verbose=0),
        calibration_size=32,
        progress=False,
        pose=PoseOptions(pose_models_dir, height=120, width=160, cache_dir=tmp_path / "cache"),
    )
    out = run_convert_video(options)
    bundle = Bundle.load(out)
    assert bundle.data["video"]["mode"] == "pose" and bundle.data["video"]["feature_shape"] == [133]
    for name in bundle.variants:
        parts = bundle.variant(name).parts
        assert set(parts) == {"pose_detector", "pose_landmarks", "head"}
        for part in ("pose_detector", "pose_landmarks"):
            assert parts[part].sha256 == sha256_file(pose_models_dir / Path(parts[part].file).name)
    assert (out / "LICENSE.mediapipe").is_file() and bundle.data["pose"]["licence"]["name"] == "Apache-2.0"
    kp = bundle.data["pose"]["keypoints"]
    assert kp["frames_with_person"] == kp["frames"]  # the drawn person is found in every frame
    assert bundle.variant("int8").metrics["accuracy"] >= 0.9  # two test clips: wave and still told apart
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 6  # one keypoint file per clip

    # edge-har evaluate-video runs the bundle's own pose models over the recorded test clips
    from edge_har.convert.video_pipeline import evaluate_video_bundle

    monkeypatch.setenv("EDGE_HAR_KEYPOINT_CACHE", str(tmp_path / "eval-cache"))
    report = evaluate_video_bundle(bundle, data, variants=["int8"], split="test", progress=False)
    assert report["variants"]["int8"]["accuracy"] == bundle.variant("int8").metrics["accuracy"]

    # bench video times one encoder and a head; a pose bundle is sent to the suite that measures it
    from edge_har.benchmarks.video import VideoBenchError, VideoSettings, run_video

    with pytest.raises(VideoBenchError, match=r"a pose bundle; measure it with edge-har bench pose "):
        run_video(out, VideoSettings.quick_settings(), tmp_path / "bench")

    # the device path: frames in, predictions out; a stretch without the person is masked, then skipped
    models = VideoModels.load(bundle, "int8")
    rt = VideoRuntime(models)
    labels = []
    for i, arm in enumerate(np.concatenate([np.zeros(12), 0.5 + 0.5 * np.sin(np.arange(40) * 2 * np.pi / 10)])):
        frame = draw_person(arm, 160, 120) if i >= 12 else np.full((120, 160, 3), 170, np.uint8)
        p = rt.push(frame, i / 10.0)
        if p is not None:
            labels.append(p.raw_label)
    counters = rt.windowing.counters()
    assert counters["frames_no_person"] >= 12 and counters["windows_no_person"] >= 1
    assert labels and labels[-1] == "wave"

    # video.publish_keypoints: each prediction carries its window's keypoints (off by default)
    from edge_har.device.smoothing import Smoother
    from edge_har.device.video_runtime import VideoStreamRuntime

    stream = VideoStreamRuntime(models, Smoother(bundle.labels, "mean_prob", 1))
    assert stream.publish_keypoints is False
    stream.publish_keypoints = True
    windowing = stream.windowing()
    published = []
    for i in range(16):
        w = windowing.push_frame(draw_person(0.5, 160, 120), 100.0 + i / 10.0)
        if w is not None:
            published.append(stream.predict(w))
    kp = published[-1].extra["keypoints"]
    assert len(kp) == 8 and len(kp[-1]) == 33 and all(0 <= v <= 1.5 for v in kp[-1][0])
    assert abs(kp[-1][0][0] - 0.5) < 0.1  # the nose near the middle of the frame

    # the real daemon on a camera file: keypoints published (video.publish_keypoints), no-person windows counted
    import sys

    import yaml

    from edge_har.convert.video_synthetic import write_clip

    frames = [np.full((120, 160, 3), 170, np.uint8)] * 12 + [
        draw_person(0.5 + 0.5 * np.sin(i * 2 * np.pi / 10), 160, 120) for i in range(40)
    ]
    clip = write_clip(tmp_path / "camera.avi", np.stack(frames), 10.0)
    config = {
        "device_id": "pose-test",
        "bundle": str(out),
        "variant": "int8",
        "source": {"type": "camera", "device": str(clip), "realtime": False, "stop_at_end": True},
        "video": {"publish_keypoints": True},
        "smoothing": {"window": 1},
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "stats_interval_s": 1},
    }
    cfg = tmp_path / "pose.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    listener = mqtt_listener(mosquitto_broker, ["edge-har/pose-test/#"])
    result = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listener.wait_last("edge-har/pose-test/status", b"stopped")
    payloads = listener.payloads("edge-har/pose-test/prediction")
    assert payloads and payloads[-1]["label"] == "wave"
    assert all(len(p["extra"]["keypoints"]) == 8 for p in payloads)
    stats = listener.payloads("edge-har/pose-test/stats")[-1]["extra"]["frames"]
    assert stats["frames_no_person"] >= 12 and stats["windows_no_person"] >= 1
