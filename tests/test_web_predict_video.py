"""``POST /api/predict`` for a video bundle (a short clip) and a still-image bundle (one image).

Both bundles are converted for the module from synthetic clips and images (a few epochs of a tiny
Conv2D + LSTM: accuracy does not matter here, agreement with the device does). Each reply is
checked window by window against the camera runtime (:class:`VideoRuntime`) on the same decoded
frames, and the bundle kinds' 4xx (wrong type, unreadable clip or image, a clip too short) are
one line each. One app serves the three kinds at once, chosen by ``model_id``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("tf_keras")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from edge_har.core.bundle import Bundle  # noqa: E402
from edge_har.core.video_models import VideoModels  # noqa: E402
from edge_har.device.smoothing import Smoother  # noqa: E402
from edge_har.device.video_runtime import VideoRuntime  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402

pytestmark = pytest.mark.slow  # two small conversions with TensorFlow: ~30-60 s on 2 cores

CLASSES = ("bounce", "orbit", "sweep")


def _convert(out: Path, data: Path, **model) -> Path:
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video

    config = VideoModelConfig(backbone="plain", weights="none", input_size=32, conv_filters=(8,), dropout=0.0, **model)
    options = VideoConvertOptions(
        out=out,
        data=data,
        fps=10,
        stride=2,
        model=config,
        variants=("float32",),
        default_variant="float32",
        train=TrainConfig(epochs=2, batch_size=8, patience=2, learning_rate=5e-3, verbose=0),
        calibration_size=10,
        progress=False,
        command="pytest test_web_predict_video",
    )
    return run_convert_video(options)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    from edge_har.convert.video_synthetic import write_synthetic_clip_dataset

    return write_synthetic_clip_dataset(
        tmp_path_factory.mktemp("web-clips") / "shapes", classes=CLASSES, clips_per_class=4, seconds=(2.0, 2.5), seed=5
    )


@pytest.fixture(scope="module")
def video_bundle(clips, tmp_path_factory) -> Path:
    return _convert(tmp_path_factory.mktemp("web-video") / "bundle", clips, frames=4, lstm_units=(8,))


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory) -> Path:
    from edge_har.convert.video_synthetic import write_synthetic_image_dataset

    data = write_synthetic_image_dataset(
        tmp_path_factory.mktemp("web-images") / "imgs", classes=CLASSES, images_per_class=8
    )
    return _convert(tmp_path_factory.mktemp("web-image") / "bundle", data, mode="image-seq", frames=1, lstm_units=(8,))


@pytest.fixture(scope="module")
def client(video_bundle, image_bundle, tiny_bundle, tmp_path_factory):
    cfg = ServeConfig(
        bundles=(tiny_bundle, video_bundle, image_bundle),
        db_path=tmp_path_factory.mktemp("web-db") / "db.sqlite3",
    )
    with TestClient(create_app(cfg)) as c:
        yield c


def _ids(client) -> dict[str, str]:
    return {b["kind"]: b["model_id"] for b in client.get("/api/info").json()["bundles"]}


def _device(bundle: Path, frames: list[np.ndarray], fps: float) -> list:
    runtime = VideoRuntime(
        VideoModels.load(Bundle.load(bundle)), smoother=Smoother(Bundle.load(bundle).labels, window=1)
    )
    return [p for i, f in enumerate(frames) if (p := runtime.push(f, i / fps)) is not None]


def _frames(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def post(client, model_id: str, name: str, body: bytes, content_type: str = "application/octet-stream"):
    return client.post("/api/predict", files={"file": (name, body, content_type)}, data={"model_id": model_id})


def test_info_names_the_three_kinds(client, video_bundle, image_bundle):
    bundles = {b["kind"]: b for b in client.get("/api/info").json()["bundles"]}
    assert set(bundles) == {"sensor", "video", "still-image"}
    video, still = bundles["video"], bundles["still-image"]
    assert video["labels"] == list(CLASSES) and still["labels"] == list(CLASSES)
    assert video["preprocessing"]["frame"]["height"] == 32 and video["preprocessing"]["window"] == 4
    assert still["preprocessing"]["window"] == 1
    assert video["variant"] == "float32"  # the default int8 is not in these bundles: their default is served
    assert ".avi" in video["accepts"] and ".png" in still["accepts"]


def test_a_clip_gives_every_window_as_the_camera_runtime(client, clips, video_bundle):
    clip = sorted((clips / "orbit").glob("*.avi"))[0]
    reply = post(client, _ids(client)["video"], clip.name, clip.read_bytes(), "video/x-msvideo")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    frames, fps = _frames(clip)
    expected = _device(video_bundle, frames, fps)
    assert body["input"] == "clip" and len(body["windows"]) == len(expected) > 1
    for got, want in zip(body["windows"], expected):
        assert got["label"] == want.raw_label
        for label in CLASSES:
            assert got["probabilities"][label] == pytest.approx(want.probabilities[label], abs=1e-5)
        assert got["latency_ms"] > 0 and got["end_s"] > got["start_s"]
    labels = [p.raw_label for p in expected]
    assert body["summary"]["majority_share"] == pytest.approx(labels.count(body["label"]) / len(labels))
    assert labels.count(body["label"]) == max(labels.count(x) for x in set(labels))
    assert body["summary"]["majority_windows"] == labels.count(body["label"])
    # the segments: the runs of one label, tiling the clip from the first window's start to the last's end
    segments = body["segments"]
    assert [(s["label"], s["windows"]) for s in segments] == [(k, len(list(g))) for k, g in itertools.groupby(labels)]
    assert segments[0]["start_s"] == body["windows"][0]["start_s"]
    assert segments[-1]["end_s"] == body["windows"][-1]["end_s"]
    assert all(a["end_s"] == b["start_s"] for a, b in zip(segments, segments[1:]))


def test_an_image_gives_one_prediction_as_the_camera_runtime(client, image_bundle, tmp_path):
    from edge_har.convert.video_synthetic import pattern_for, render_clip

    image = render_clip(pattern_for("sweep"), 1, (48, 48), 10.0, np.random.default_rng(0))[0]
    ok, png = cv2.imencode(".png", image)
    assert ok
    reply = post(client, _ids(client)["still-image"], "shot.png", png.tobytes(), "image/png")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    (want,) = _device(image_bundle, [cv2.imdecode(png, cv2.IMREAD_COLOR)], 1.0)
    assert body["input"] == "image" and len(body["windows"]) == 1
    (segment,) = body["segments"]
    assert segment["label"] == body["label"] and segment["windows"] == 1
    assert body["label"] == want.raw_label and body["confidence"] == pytest.approx(want.raw_confidence, abs=1e-5)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    ok, jpg = cv2.imencode(".jpg", image)
    assert post(client, _ids(client)["still-image"], "shot.JPG", jpg.tobytes(), "image/jpeg").status_code == 200


def test_video_and_image_mistakes_are_one_line_4xx(client, clips, tmp_path):
    from edge_har.convert.video_synthetic import write_clip

    ids = _ids(client)
    one_frame = write_clip(tmp_path / "one.avi", np.zeros((1, 48, 64, 3), np.uint8), 10.0)
    cases = [
        (ids["video"], "notes.csv", b"1,2,3\n", 415, ["notes.csv", "video bundle", ".avi"]),
        (ids["video"], "broken.avi", b"RIFF\x00\x00garbage" * 50, 422, ["broken.avi", "not a video"]),
        (ids["video"], "one.avi", one_frame.read_bytes(), 422, ["one.avi", "too short", "4 frames"]),
        (ids["still-image"], "broken.png", b"\x89PNG\r\n\x1a\nnot really", 422, ["broken.png", "not an image"]),
        (ids["still-image"], "empty.jpg", b"", 422, ["empty.jpg", "not an image"]),
        (ids["still-image"], "walk.csv", b"1,2,3\n", 415, ["walk.csv", "still-image bundle", ".png"]),
        (ids["sensor"], "shot.png", b"\x89PNG", 415, ["shot.png", "sensor bundle"]),
    ]
    for model_id, name, body, status, words in cases:
        reply = post(client, model_id, name, body)
        assert reply.status_code == status, (name, reply.text)
        detail = reply.json()["detail"]
        assert "\n" not in detail and all(w in detail for w in words), (name, detail)
    assert json.loads(client.get("/api/info").text)["bundles"]  # still serving


def test_explaining_a_video_or_image_window_is_a_422_naming_sensor_bundles(client, clips):
    """POST /api/explain takes the Predict API's upload but explains only sensor windows: one line saying so."""
    ids = _ids(client)
    clip = sorted((clips / "orbit").glob("*.avi"))[0]
    for kind, name, body in (("video", clip.name, clip.read_bytes()), ("still-image", "shot.png", b"\x89PNG")):
        reply = client.post(
            "/api/explain", files={"file": (name, body, "application/octet-stream")}, data={"model_id": ids[kind]}
        )
        assert reply.status_code == 422, (kind, reply.text)
        detail = reply.json()["detail"]
        assert "\n" not in detail and "model_id" in detail and "explanations are for sensor bundles" in detail
        assert ids[kind] in detail and f"a {kind} bundle" in detail
