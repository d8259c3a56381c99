"""The camera path end to end: clips -> `edge-har convert-video` -> bundle -> daemon on a clip file -> real broker.

One small model is converted for the module (a plain Conv2D stack on 32x32 frames, T = 8, an LSTM of
16 units, float32 and int8, with the whole clip model exported too) from clips the test writes:
coloured shapes moving in class-specific ways, encoded as MJPG AVI by OpenCV.

Stated tolerances, on class probabilities over every window of the test clips:
* float32 encoder + head vs the whole Keras model: 1e-5 (float rounding; measured ~2e-7);
* int8 encoder + head vs the whole Keras model: 0.05 at most (measured ~0.01), same class on >= 98 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

cv2 = pytest.importorskip("cv2")
pytest.importorskip("tf_keras")

from edge_har.convert.video_datasets import load_video_dataset, window_index  # noqa: E402
from edge_har.convert.video_synthetic import pattern_for, render_clip, write_clip, write_synthetic_clip_dataset  # noqa: E402
from edge_har.core.bundle import Bundle, BundleError, validate_data  # noqa: E402
from edge_har.core.frames import FrameSpec, normalise_frames  # noqa: E402
from edge_har.core.video_models import VideoModels  # noqa: E402
from edge_har.device.video_runtime import VideoRuntime  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("bounce", "orbit", "sweep")
FLOAT_TOL = 1e-5
INT8_TOL = 0.05


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return write_synthetic_clip_dataset(
        tmp_path_factory.mktemp("video-data") / "shapes",
        classes=CLASSES,
        clips_per_class=8,
        seconds=(2.5, 3.5),
        fps=10,
        size=(64, 48),
        seed=3,
    )


@pytest.fixture(scope="module")
def video_bundle(clips, tmp_path_factory) -> Path:
    """Converted through the real command line, as a user would."""
    from edge_har.cli import main

    out = tmp_path_factory.mktemp("video-bundle") / "shapes-video"
    code = main(
        [
            "--log-level",
            "WARNING",
            "convert-video",
            "--data",
            str(clips),
            "--fps",
            "10",
            "--stride",
            "2",
            "--backbone",
            "plain",
            "--input-size",
            "32",
            "--conv-filters",
            "8,16",
            "--frames",
            "8",
            "--lstm-units",
            "16",
            "--dropout",
            "0.1",
            "--epochs",
            "15",
            "--batch-size",
            "16",
            "--patience",
            "15",
            "--learning-rate",
            "1e-3",
            "--variants",
            "float32,int8",
            "--calibration-size",
            "50",
            "--clip-model",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def test_windows(video_bundle, clips):
    """Every window of the bundle's recorded test clips, as normalised frames (n, T, H, W, 3)."""
    bundle = Bundle.load(video_bundle)
    spec = FrameSpec.from_json(bundle.data["preprocessing"])
    ds = load_video_dataset(clips, spec, progress=False)
    wanted = set(bundle.metrics["split"]["test_sources_relative"])
    ids = [i for i, c in enumerate(ds.clips) if str(Path(c.source).relative_to(clips)) in wanted]
    index = window_index(ds, ids, spec.window, spec.stride)
    return normalise_frames(index.gather([c.frames for c in ds.clips]), spec), index.y


def split_probs(models: VideoModels, windows: np.ndarray) -> np.ndarray:
    """Encoder once per frame, head over the T features: the device's computation."""
    return np.stack([models.classify_features(np.stack([models.encode(f) for f in w])) for w in windows])


# ---------------------------------------------------------------- the bundle


def test_bundle_holds_an_encoder_and_a_head_per_variant(video_bundle):
    bundle = Bundle.load(video_bundle)
    assert bundle.kind == "video" and bundle.labels == list(CLASSES)
    assert bundle.verify() == []
    doc = bundle.data
    assert doc["video"]["mode"] == "video" and doc["video"]["frames"] == 8 and doc["video"]["stride"] == 2
    assert doc["input"]["shape"] == [1, 8, 32, 32, 3]
    for name in ("float32", "int8"):
        parts = bundle.variant(name).parts
        assert set(parts) == {"encoder", "head", "clip"}
        assert parts["encoder"].meta["input"]["shape"] == [1, 32, 32, 3]
        assert parts["encoder"].meta["output"]["shape"] == [1, 16]
        assert parts["head"].meta["input"]["shape"] == [1, 8, 16]
        assert parts["head"].meta["output"]["shape"] == [1, 3]
    int8 = bundle.variant("int8").parts
    assert int8["encoder"].meta["input"]["dtype"] == "int8" and int8["head"].meta["input"]["dtype"] == "int8"
    # The head's LSTM unrolled (the default lstm_export), like the sensor model's: 8 steps, no fused op.
    head_ops = int8["head"].meta["ops"]
    assert (
        "UNIDIRECTIONAL_SEQUENCE_LSTM" not in head_ops
        and head_ops["TANH"] == 2 * 8
        and not int8["head"].meta["float_ops"]
    )
    assert doc["variants"]["int8"]["head_calibration"].endswith("encoded by encoder_int8.tflite")
    # accuracy of every variant, measured as the device streams it, and the gate's record
    assert doc["metrics"]["variants"]["float32"]["accuracy"] >= 0.9
    assert doc["metrics"]["int8_drop_points"] <= doc["metrics"]["max_int8_drop_points"]
    assert doc["metrics"]["float32_vs_keras_max_abs_diff"] < FLOAT_TOL
    assert (video_bundle / doc["variants"]["int8"]["metrics"]["confusion_png"]).is_file()
    assert doc["provenance"]["dataset"]["clips"] == 24 and doc["training"]["trained"].startswith("end to end")


def test_parts_are_checked_like_whole_models(video_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(video_bundle, copy)
    with pytest.raises(BundleError, match="has no part None; its parts: encoder, head, clip"):
        Bundle.load(copy).load_model("int8")
    head = copy / "head_int8.tflite"
    head.write_bytes(head.read_bytes()[:-1] + b"\x00")
    problems = Bundle.load(copy).verify()
    assert len(problems) == 1 and problems[0].startswith("variants.int8.parts.head.sha256: head_int8.tflite hashes to")
    data = json.loads((copy / "bundle.json").read_text())
    data["kind"] = "sensor"
    with pytest.raises(BundleError, match="variants.float32.parts: only a video bundle"):
        validate_data(data)
    data = json.loads((copy / "bundle.json").read_text())
    del data["variants"]["int8"]["parts"]["head"]["sha256"]
    with pytest.raises(BundleError, match="missing key 'variants.int8.parts.head.sha256'"):
        validate_data(data)


# ---------------------------------------------------------------- split == whole


def test_split_pair_gives_the_whole_models_prediction(video_bundle, test_windows):
    import tf_keras

    x, y = test_windows
    assert len(x) >= 20
    whole = tf_keras.models.load_model(video_bundle / "keras_model.h5", compile=False).predict(x, verbose=0)
    bundle = Bundle.load(video_bundle)
    f32 = VideoModels.load(bundle, "float32", load_clip=True)
    split32 = split_probs(f32, x)
    np.testing.assert_allclose(split32, whole, atol=FLOAT_TOL)
    clip32 = np.stack([f32.clip.predict(w) for w in x])  # the whole clip model as one .tflite
    np.testing.assert_allclose(split32, clip32, atol=FLOAT_TOL)
    i8 = VideoModels.load(bundle, "int8")
    split8 = split_probs(i8, x)
    assert np.abs(split8 - whole).max() <= INT8_TOL
    assert (split8.argmax(axis=1) == whole.argmax(axis=1)).mean() >= 0.98
    assert (split32.argmax(axis=1) == y).mean() >= 0.9  # and the model learnt the classes


def test_streaming_a_clip_file_equals_the_training_windows(video_bundle, clips):
    """Frames decoded one by one, sampled by timestamp, preprocessed and ring-buffered as on the device
    give the probabilities of the windows training cut from the same file."""
    bundle = Bundle.load(video_bundle)
    spec = FrameSpec.from_json(bundle.data["preprocessing"])
    models = VideoModels.load(bundle, "float32")
    path = sorted((clips / "orbit").glob("*.avi"))[0]
    # the training side
    ds = load_video_dataset(clips, spec, classes=["orbit"], progress=False)
    ci = next(i for i, c in enumerate(ds.clips) if c.source == str(path))
    index = window_index(ds, [ci], spec.window, spec.stride)
    expected = split_probs(models, normalise_frames(index.gather([c.frames for c in ds.clips]), spec))
    # the device side: the file's frames one by one with the file's timestamps (index / 10 fps)
    cap = cv2.VideoCapture(str(path))
    raw = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        raw.append(frame)
    cap.release()
    runtime = VideoRuntime(models)
    got = [p for i, frame in enumerate(raw) if (p := runtime.push(frame, i / 10.0)) is not None]
    assert len(got) == len(expected)
    streamed = np.stack([[p.probabilities[label] for label in bundle.labels] for p in got])
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
    assert all(p.label == "orbit" for p in got)
    # a faster camera: 30 fps of which the sampler keeps every third frame, the same windows result
    fast = VideoRuntime(models)
    tripled = [f for f in raw for _ in range(3)]
    got30 = [p for i, frame in enumerate(tripled) if (p := fast.push(frame, i / 30.0)) is not None]
    assert fast.windowing.frames_skipped_rate == 2 * len(raw)
    np.testing.assert_allclose(
        np.stack([[p.probabilities[lb] for lb in bundle.labels] for p in got30]), expected, atol=1e-5
    )


def test_gate_refuses_int8_below_the_limit(video_bundle, clips):
    from edge_har.convert.pipeline import AccuracyGateError
    from edge_har.convert.quantize import resolve_variants
    from edge_har.convert.video_pipeline import VideoConvertOptions, evaluate_video_bundle, gate

    bundle = Bundle.load(video_bundle)
    results = evaluate_video_bundle(bundle, clips, split="test", progress=False)
    assert set(results["variants"]) == {"float32", "int8"}
    recorded = bundle.metrics["variants"]
    for name, entry in results["variants"].items():  # evaluate-video re-creates the recorded test split
        assert entry["accuracy"] == pytest.approx(recorded[name]["accuracy"])

    class Ev:
        def __init__(self, acc: float) -> None:
            self.report = {"accuracy": acc}

    specs = resolve_variants(("float32", "int8"))
    options = VideoConvertOptions(out=Path("unused"), max_int8_drop=1.0)
    with pytest.raises(AccuracyGateError, match="int8 test accuracy 95.00% is 5.00 points below"):
        gate({"float32": Ev(1.0), "int8": Ev(0.95)}, specs, options)
    drops, over = gate({"float32": Ev(1.0), "int8": Ev(0.995)}, specs, options)
    assert drops == {"int8": 0.5} and not over


# ---------------------------------------------------------------- the daemon


def write_mixed_clip(path: Path, seconds_per_class: float = 4.0, fps: float = 10.0) -> list[tuple[str, int, int]]:
    """One 320x240 file: each class in turn; returns (label, first frame, end frame) per segment."""
    rng = np.random.default_rng(21)
    n = int(seconds_per_class * fps)
    frames, segments = [], []
    for i, label in enumerate(("sweep", "bounce", "orbit")):
        frames.append(render_clip(pattern_for(label), n, (320, 240), fps, rng))
        segments.append((label, i * n, (i + 1) * n))
    write_clip(path, np.concatenate(frames), fps)
    return segments


def test_daemon_streams_a_clip_file_as_its_camera(video_bundle, mosquitto_broker, mqtt_listener, tmp_path):
    clip = tmp_path / "mixed.avi"
    segments = write_mixed_clip(clip)
    config = {
        "device_id": "cam-test",
        "bundle": str(video_bundle),
        "variant": "int8",
        "source": {"type": "camera", "device": str(clip), "realtime": False, "stop_at_end": True},
        "video": {"stride": 2},
        "smoothing": {"window": 1},
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "stats_interval_s": 1},
    }
    cfg = tmp_path / "camera.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    listener = mqtt_listener(mosquitto_broker, ["edge-har/cam-test/#"])
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listener.wait_last("edge-har/cam-test/status", b"stopped")  # sent last: every prediction is before it
    preds = listener.on("edge-har/cam-test/prediction")
    payloads = [m.json() for m in preds]
    # 120 frames at the model's 10 fps, T = 8, stride 2: (120 - 8) / 2 + 1 windows, none dropped
    assert len(payloads) == 57
    assert [p["seq"] for p in payloads] == list(range(57))
    first = payloads[0]
    assert first["device_id"] == "cam-test" and first["model_id"] == Bundle.load(video_bundle).model_id
    assert set(first["probabilities"]) == set(CLASSES) and first["inference_ms"] > 0
    # the window ending at frame e lies in one class's segment when e - 8 >= segment start
    correct = total = 0
    for k, p in enumerate(payloads):
        end = 8 + 2 * k  # frames [end - 8, end)
        for label, lo, hi in segments:
            if lo <= end - 8 and end <= hi:
                total += 1
                correct += p["label"] == label
    assert total >= 40 and correct / total >= 0.9, f"{correct}/{total} windows right"
    stats = listener.payloads("edge-har/cam-test/stats")[-1]
    source = stats["extra"]["source"]
    assert source["frames_read"] == 120 and source["frames_dropped"] == 0 and source["frame_size"] == [320, 240]
    assert stats["extra"]["frames"]["frames_kept"] == 120 and stats["windows_total"] == 57
    assert listener.on("edge-har/cam-test/status")[-1].payload == b"stopped"
    assert time.monotonic() - started < 60


def _run_daemon_on(video_bundle, broker, listener_factory, tmp_path, clip, **source):
    device = f"cam-{clip.stem}"
    config = {
        "device_id": device,
        "bundle": str(video_bundle),
        "source": {"type": "camera", "device": str(clip), "realtime": False, **source},
        "mqtt": {"host": broker.host, "port": broker.port, "stats_interval_s": 60},
    }
    cfg = tmp_path / f"{device}.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    listener = listener_factory(broker, [f"edge-har/{device}/#"])
    result = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    listener.wait_last(f"edge-har/{device}/status", b"stopped")
    return result, listener.payloads(f"edge-har/{device}/stats")[-1]["extra"]["source"]


@pytest.mark.slow  # two daemon runs, ~15 s
def test_daemon_on_an_undecodable_or_truncated_file(video_bundle, mosquitto_broker, mqtt_listener, tmp_path):
    """Both used to end the source silently with exit 0 (or, without stop_at_end, an online daemon idling)."""
    from edge_har.device.daemon import EXIT_CONFIG

    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video" * 100)
    # no stop_at_end: nothing was ever read, so it stops (retained "stopped", last stats) and exits 78
    result, source = _run_daemon_on(video_bundle, mosquitto_broker, mqtt_listener, tmp_path, bad)
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    assert "ended without delivering anything" in result.stderr
    assert source["file_errors"] == 1 and "cannot decode it" in source["last_error"] and source["frames_read"] == 0
    # a clip cut mid-stream: what it held is inferred, the cut is counted and reported, exit 0 (stop_at_end)
    whole = tmp_path / "whole.avi"
    write_mixed_clip(whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    result, source = _run_daemon_on(video_bundle, mosquitto_broker, mqtt_listener, tmp_path, cut, stop_at_end=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert source["file_errors"] == 1 and 0 < source["frames_read"] < 120
    assert f"ended after {source['frames_read']} of its 120 frames" in source["last_error"]


def test_camera_configs_fit_a_real_video_bundle(video_bundle, tmp_path):
    from edge_har.device.config import check_files, load_config

    for name in ("pi4-camera.yaml", "pi5-camera.yaml", "usb-webcam.yaml"):
        data = yaml.safe_load((REPO / "firmware_configs" / name).read_text())
        data["bundle"] = str(video_bundle)
        (tmp_path / "pw").write_text("pw\n")
        (tmp_path / "pw").chmod(0o600)  # as the install steps make it; readable by others is a warning
        data["mqtt"]["password_file"] = str(tmp_path / "pw")
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        errors, warnings = check_files(load_config(path))
        assert errors == [], name
        # /dev/video0 may be absent here; a LAN password without TLS is warned of
        assert all("source.device" in w or "over plain TCP (no tls section)" in w for w in warnings), warnings
    # a camera needs a video bundle, and a video bundle a camera
    sensor = dict(data, source={"type": "replay", "path": str(tmp_path), "format": "folder"})
    path = tmp_path / "mismatch.yaml"
    path.write_text(yaml.safe_dump(sensor, sort_keys=False))
    errors, _ = check_files(load_config(path))
    assert any("is a video bundle; it needs source type camera" in e for e in errors)
