"""A camera that sees nobody: windows without a person counted once per stride, ``no_person_s`` in
the stats, one WARNING after ``video.no_person_warn_s`` and one INFO when a person is back.

Real parts throughout: a real pose bundle (tests/pose_bundles.py: BlazePose + a small head),
its runtime fed drawn frames (a grey frame has nobody; ``draw_person`` has one) and a real KTH
clip, and the real daemon on a camera file publishing to a private mosquitto. Marked ``pose``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.pose_bundles import FPS, ROOT, blank, kth_frames, person, pose_bundle

pytestmark = pytest.mark.pose

WINDOW, STRIDE = 8, 4  # the bundle's (tests/pose_bundles.py)
LOGGER = "edge_har.device.video_runtime"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return pose_bundle(tmp_path_factory)


@pytest.fixture
def windowing(bundle):
    """The daemon's source-thread stage of the bundle's int8 variant, as ``edge-har run`` builds it."""
    from edge_har.core.bundle import Bundle
    from edge_har.core.video_models import VideoModels
    from edge_har.device.smoothing import Smoother
    from edge_har.device.video_runtime import VideoStreamRuntime

    b = Bundle.load(bundle)
    stream = VideoStreamRuntime(VideoModels.load(b, "int8"), Smoother(b.labels, "mean_prob", 1))
    w = stream.windowing()
    assert (w.window, w.stride) == (WINDOW, STRIDE)
    return w


def feed(windowing, frames, start: int = 0, wall0: float = 1000.0) -> list:
    """Push frames at the bundle's rate (every one kept), wall time 0.1 s apart; the windows that came out."""
    out = []
    for i, frame in enumerate(frames, start=start):
        w = windowing.push_frame(frame, i / FPS, wall_time=wall0 + i / FPS)
        if w is not None:
            out.append(w)
    return out


# ---------------------------------------------------------------- windows_no_person


def test_windows_without_a_person_from_the_start_are_counted_once_per_stride(windowing):
    """The first window (8 frames) had nobody: every later frame was checked and counted again (17, not 5)."""
    assert feed(windowing, [blank()] * 24) == []
    # windows end at kept frames 8, 12, 16, 20, 24: as many as would have been published
    assert windowing.counters()["windows_no_person"] == 1 + (24 - WINDOW) // STRIDE == 5
    assert windowing.counters()["frames_no_person"] == 24


def test_windows_after_a_start_without_a_person_stay_on_the_stride(windowing):
    """After empty windows, a person's first window came out at the very frame they appeared (off the
    stride, carrying one frame's encoder time); it comes out on the stride like every window."""
    windows = feed(windowing, [blank()] * 12 + [person(0.5 + 0.5 * np.sin(i)) for i in range(16)])
    assert [w.frame_index for w in windows] == [15, 19, 23, 27]  # kept frame 8 + k * 4, 0-based
    assert [w.frames_encoded for w in windows] == [STRIDE] * 4
    assert windows[0].segment_start and not any(w.segment_start for w in windows[1:])
    assert windowing.counters()["windows_no_person"] == 2  # the windows ending at frames 8 and 12


def test_a_new_segment_starts_its_own_first_window(windowing):
    feed(windowing, [blank()] * 8)
    assert windowing.counters()["windows_no_person"] == 1
    out = []
    for i in range(8):  # a reconnect: segment 2, a person at once; its first window after 8 frames
        w = windowing.push_frame(person(), 10.0 + i / FPS, wall_time=2000.0 + i / FPS, segment=2)
        if w is not None:
            out.append(w)
    assert [w.frame_index for w in out] == [7] and out[0].segment_start
    assert windowing.counters()["windows_no_person"] == 1


# ---------------------------------------------------------------- no_person_s and the log lines


def test_no_person_s_warns_once_and_says_when_a_person_is_back(windowing, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    windowing.no_person_warn_s = 2.0
    assert windowing.counters()["no_person_s"] == 0.0  # no frame yet
    feed(windowing, [blank()] * 15)  # wall 1000.0 .. 1001.4
    assert windowing.counters()["no_person_s"] == pytest.approx(1.4)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    feed(windowing, [blank()] * 25, start=15)  # .. 1003.9: past 2 s since the first frame
    assert windowing.counters()["no_person_s"] == pytest.approx(3.9)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "no person seen for 2.0 s" in warnings[0].getMessage()
    assert "(video.no_person_warn_s: 2)" in warnings[0].getMessage()
    caplog.clear()
    feed(windowing, [person()] * 3, start=40)
    assert windowing.counters()["no_person_s"] == 0.0
    back = [r for r in caplog.records if r.levelno == logging.INFO and "person seen again" in r.getMessage()]
    assert len(back) == 1 and "after 4.0 s" in back[0].getMessage()
    caplog.clear()
    feed(windowing, [blank()] * 10 + [person()] * 2, start=43)  # under 2 s without one: nothing said
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "person" in r.getMessage()]


def test_without_a_threshold_nothing_is_logged(windowing, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert windowing.no_person_warn_s is None  # RuntimeOptions carries video.no_person_warn_s to the daemon's stage
    feed(windowing, [blank()] * 40)
    assert windowing.counters()["no_person_s"] == pytest.approx(3.9)
    assert not [r for r in caplog.records if "person" in r.getMessage()]


def test_the_real_kth_clip_then_nobody_then_the_clip_again(windowing, caplog):
    """A real person (KTH person 04 boxing, 25 fps, kept at 10), an empty room for 3 s, the person again."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    windowing.no_person_warn_s = 2.0
    frames, fps = kth_frames(75)  # 3 s
    room = np.full_like(frames[0], int(np.median(frames[0])))  # the clip's own grey, nobody in it
    t = 0.0
    published = []

    def play(images, wall0):
        nonlocal t
        for img in images:
            w = windowing.push_frame(img, t, wall_time=wall0 + t)
            t += 1.0 / fps
            if w is not None:
                published.append(w)

    play(frames, 0.0)
    c = windowing.counters()
    assert c["no_person_s"] == 0.0 and c["frames_no_person"] == 0 and c["windows_no_person"] == 0
    assert len(published) >= 4
    play([room] * 75, 0.0)  # 3 s of nobody
    c = windowing.counters()
    assert 2.5 < c["no_person_s"] <= 3.1 and c["windows_no_person"] >= 4
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    before = len(published)
    play(frames, 0.0)
    assert windowing.counters()["no_person_s"] == 0.0 and len(published) > before
    assert len([r for r in caplog.records if "person seen again" in r.getMessage()]) == 1


# ---------------------------------------------------------------- the daemon


def test_the_daemon_publishes_no_person_s_and_logs_the_warning(bundle, tmp_path, mosquitto_broker, mqtt_listener):
    """``edge-har run`` on a camera file paced in real time: 3 s of an empty room, then the drawn person."""
    import yaml

    from edge_har.convert.video_synthetic import write_clip

    frames = [blank()] * 30 + [person(0.5 + 0.5 * np.sin(i * 2 * np.pi / 10)) for i in range(30)]
    clip = write_clip(tmp_path / "camera.avi", np.stack(frames), FPS)
    config = {
        "device_id": "nobody-test",
        "bundle": str(bundle),
        "variant": "int8",
        "source": {"type": "camera", "device": str(clip), "realtime": True, "stop_at_end": True},
        "video": {"no_person_warn_s": 1.5},
        "smoothing": {"window": 1},
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "stats_interval_s": 1},
    }
    cfg = tmp_path / "camera.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    listener = mqtt_listener(mosquitto_broker, ["edge-har/nobody-test/#"])
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg), "--summary-json", str(summary)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listener.wait_last("edge-har/nobody-test/status", b"stopped")
    stats = [p["extra"]["frames"] for p in listener.payloads("edge-har/nobody-test/stats")]
    assert any(s["no_person_s"] >= 1.0 for s in stats), stats  # a stats message while the room was empty
    assert stats[-1]["no_person_s"] == 0.0  # the person is there at the end
    # the windows ending at kept frames 8, 12, .., 28 had nobody (one fewer if the paced file dropped a frame)
    assert stats[-1]["windows_no_person"] in (5, 1 + (30 - WINDOW) // STRIDE)
    warning = [line for line in result.stderr.splitlines() if "(video.no_person_warn_s: 1.5)" in line]
    assert len(warning) == 1 and "WARNING" in warning[0], result.stderr[-3000:]
    assert len([line for line in result.stderr.splitlines() if "person seen again" in line]) == 1
    import json

    s = json.loads(summary.read_text())
    assert s["frames"]["windows_no_person"] == stats[-1]["windows_no_person"] and s["frames"]["no_person_s"] == 0.0
