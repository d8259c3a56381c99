"""The camera source on real OpenCV captures: clip files, and a live HTTP MJPEG stream that is cut and comes back."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

cv2 = pytest.importorskip("cv2")
REPO = Path(__file__).resolve().parents[1]

from edge_har.convert.video_synthetic import pattern_for, render_clip, write_clip  # noqa: E402
from edge_har.device.sources.camera import (  # noqa: E402
    CameraError,
    CameraSource,
    CameraSourceConfig,
    CameraStreamSource,
    FrameChunk,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames = render_clip(pattern_for("orbit"), 40, (160, 120), 20.0, np.random.default_rng(0))
    return write_clip(tmp_path_factory.mktemp("cam") / "orbit.avi", frames, 20.0)


def drain(src: CameraSource, delay: float = 0.0, limit: int = 10_000) -> list:
    out = []
    while len(out) < limit:
        frame = src.read(timeout=3.0)
        if frame is None:
            break
        out.append(frame)
        if delay:
            time.sleep(delay)
    return out


def test_config_targets_and_checks():
    assert CameraSourceConfig(device=0).target_kind() == "index"
    assert CameraSourceConfig(device="2").target_kind() == "index"
    assert CameraSourceConfig(device="/dev/video0").target_kind() == "v4l2"
    assert CameraSourceConfig(device="rtsp://cam.local:554/stream").target_kind() == "url"
    assert CameraSourceConfig(device="clips/a.mp4").target_kind() == "file"
    with pytest.raises(ValueError, match="fourcc"):
        CameraSourceConfig(fourcc="MJPEG")
    with pytest.raises(ValueError, match="extra"):
        CameraSourceConfig(device=0, widht=640)
    with pytest.raises(CameraError, match="does not exist"):
        CameraSource(CameraSourceConfig(device="/nowhere/clip.avi"))


def test_backend_must_fit_the_device_kind(clip, tmp_path, capsys):
    """A shipped camera config (backend v4l2) pointed at a file used to pass validate-config and idle at run time."""
    from edge_har.device.daemon_cli import validate_files

    with pytest.raises(ValueError, match=r"backend v4l2 cannot open a video file .* use backend auto or ffmpeg"):
        CameraSourceConfig(device=str(clip), backend="v4l2")
    with pytest.raises(ValueError, match="backend ffmpeg cannot open a camera index"):
        CameraSourceConfig(device=0, backend="ffmpeg")
    with pytest.raises(ValueError, match="backend v4l2 cannot open a network stream"):
        CameraSourceConfig(device="rtsp://cam.local/stream", backend="v4l2")
    for device, backend in ((str(clip), "ffmpeg"), (str(clip), "auto"), ("/dev/video0", "v4l2"), (1, "gstreamer")):
        CameraSourceConfig(device=device, backend=backend)
    shipped = yaml.safe_load((REPO / "firmware_configs" / "pi4-camera.yaml").read_text())
    assert shipped["source"]["backend"] == "v4l2"
    shipped["source"]["device"] = str(clip)
    shipped["mqtt"].pop("password_file", None)
    shipped["mqtt"].pop("username", None)
    cfg = tmp_path / "file.yaml"
    cfg.write_text(yaml.safe_dump(shipped, sort_keys=False))
    assert validate_files([cfg], check_paths=False) == 1
    out = capsys.readouterr()
    assert "source.backend: backend v4l2 cannot open a video file" in out.out + out.err


def test_file_without_pacing_hands_over_every_frame(clip):
    with CameraSource(CameraSourceConfig(device=str(clip), realtime=False)) as src:
        frames = drain(src)
        assert len(frames) == 40
        assert [f.index for f in frames] == list(range(40))
        assert frames[5].timestamp == pytest.approx(5 / 20.0)  # index / file fps, the rule training used
        assert frames[0].image.shape == (120, 160, 3)
        assert src.finished and src.stats.frames_dropped == 0
        assert (src.stats.width, src.stats.height, src.stats.source_fps) == (160, 120, 20.0)


def test_slow_consumer_drops_frames_instead_of_falling_behind(clip):
    with CameraSource(CameraSourceConfig(device=str(clip), realtime=True)) as src:
        started = time.monotonic()
        frames = drain(src, delay=0.15)  # ~6.7 frames/s taken from a 20 fps stream
        elapsed = time.monotonic() - started
    st = src.stats
    assert st.frames_read == 40
    assert st.frames_dropped >= 20 and st.frames_delivered == len(frames)
    assert st.frames_delivered + st.frames_dropped == st.frames_read
    assert elapsed < 3.5  # paced at the file's 2 s, not 40 x 0.15 s = 6 s of backlog
    indices = [f.index for f in frames]
    assert indices == sorted(indices) and indices[-1] >= 35  # the newest frames, not a queue's oldest


def _arrival_to_read_ms(realtime: bool, clip: Path) -> float:
    """Median ms from a frame's ``arrival`` (where e2e latency starts) to a waiting consumer getting it."""
    delays = []
    with CameraSource(CameraSourceConfig(device=str(clip), realtime=realtime)) as src:
        while (frame := src.read(timeout=3.0)) is not None:
            delays.append(1000 * (time.perf_counter() - frame.arrival))
    assert len(delays) >= 30
    return float(np.median(delays))


def test_paced_playback_latency_starts_after_the_pacing_wait(clip):
    """Real-time playback waits 1/fps before handing a frame over; that wait is not latency (was 50 ms here)."""
    paced, unpaced = _arrival_to_read_ms(True, clip), _arrival_to_read_ms(False, clip)
    # a consumer already waiting gets each frame within scheduling noise, paced or not (1/fps is 50 ms)
    assert paced < 10.0 and abs(paced - unpaced) < 10.0, (paced, unpaced)


def test_looping_file_starts_a_new_segment(clip):
    with CameraSource(CameraSourceConfig(device=str(clip), realtime=False, loop=True)) as src:
        frames = drain(src, limit=100)
    assert [f.segment for f in frames[:40]] == [1] * 40
    assert frames[40].segment == 2 and frames[40].index == 0 and frames[40].timestamp == 0.0
    assert src.stats.reconnects == 0  # a loop is not a lost camera


def test_a_file_opencv_cannot_decode_ends_the_source(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video" * 100)
    with CameraSource(CameraSourceConfig(device=str(bad))) as src:
        assert src.read(timeout=3.0) is None
        assert src.finished and src.stats.open_failures == 1 and "cannot open" in src.stats.last_error
        assert src.stats.file_errors == 1 and "cannot decode it" in src.stats.last_error


def test_a_clip_truncated_mid_stream_is_counted_and_reported(clip, tmp_path):
    """Cut in half, the AVI still opens and plays 19 of the 40 frames its header states, then ends."""
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with CameraSource(CameraSourceConfig(device=str(cut), realtime=False)) as src:
        frames = drain(src)
    assert 0 < len(frames) < 40 and src.finished
    assert src.stats.file_errors == 1
    assert f"ended after {len(frames)} of its 40 frames (truncated or damaged)" in src.stats.last_error
    with CameraSource(CameraSourceConfig(device=str(clip), realtime=False)) as src:  # the whole file: no error
        assert len(drain(src)) == 40
    assert src.stats.file_errors == 0 and src.stats.last_error is None


# ---------------------------------------------------------------- a live network stream


class _MjpegHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while not self.server.stopping:  # type: ignore[attr-defined]
                jpeg = self.server.jpegs[i % len(self.server.jpegs)]  # type: ignore[attr-defined]
                i += 1
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
                )
                time.sleep(1 / 30)
        except (BrokenPipeError, ConnectionResetError):
            pass


class MjpegCamera:
    """An IP-camera-like HTTP MJPEG stream on a fixed port that can be cut and restarted."""

    def __init__(self) -> None:
        frames = render_clip(pattern_for("sweep"), 15, (160, 120), 30.0, np.random.default_rng(2))
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _MjpegHandler)
        server.daemon_threads = True
        server.stopping = False  # type: ignore[attr-defined]
        server.jpegs = self.jpegs  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stopping = True  # type: ignore[attr-defined]
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def test_lost_network_camera_reconnects_with_backoff():
    cam = MjpegCamera()
    cam.start()
    config = CameraSourceConfig(device=cam.url, read_timeout_s=1.0, reconnect_initial_s=0.2, reconnect_max_s=0.4)
    source = CameraStreamSource(config)
    try:
        source.start()
        chunks = []
        while len(chunks) < 10:
            chunk = source.read(timeout=5.0)
            assert chunk is not None, "no frame from the MJPEG stream"
            chunks.append(chunk)
        assert isinstance(chunks[0], FrameChunk) and chunks[0].segment_start and not chunks[1].segment_start
        assert chunks[0].frame.image.shape == (120, 160, 3) and len(chunks[0].samples) == 0
        cam.stop()  # the camera goes away
        deadline = time.monotonic() + 10
        while source.camera.stats.open_failures < 2 and time.monotonic() < deadline:
            source.read(timeout=0.2)
        status = source.status()
        assert status["connected"] is False and source.camera.stats.open_failures >= 2
        assert not source.finished  # a live camera is never "finished": the daemon keeps waiting
        cam.start()  # and comes back on the same address
        deadline = time.monotonic() + 10
        back = None
        while time.monotonic() < deadline:
            chunk = source.read(timeout=0.5)
            if chunk is not None and chunk.frame.segment > 1:
                back = chunk
                break
        assert back is not None, f"no frame after the camera came back: {source.status()}"
        assert back.segment_start  # windows must not span the gap
        status = source.status()
        assert status["connected"] and status["reconnects"] == 1 and status["frames_read"] >= 11
    finally:
        source.stop()
        cam.stop()
