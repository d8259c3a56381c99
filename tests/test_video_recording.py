"""Camera recordings: frames to Motion-JPEG parts with a frame index, read back by convert-video.

Real files and real JPEG encoding: a power cut is a child process killed with SIGKILL and parts
cut at every kind of place, a full disk is /dev/full behind a part's name, the command is
``edge-har record`` on a real clip file through the camera source.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert.video_datasets import VideoDatasetError, load_video_dataset
from edge_har.core.frames import FrameSpec
from edge_har.core.recording_layout import LabelSegment, LayoutError, write_labels
from edge_har.core.video_recording_layout import (
    VIDEO_META_FILE,
    VideoMeta,
    index_name,
    iter_frames,
    read_frame_index,
    read_video_meta,
    video_part_files,
    video_session_dirs,
)
from edge_har.device.recording.video_writer import VideoRecordingWriter
from edge_har.device.recording.writer import RecordingFull
from tests.record_helpers import REPO, record_process

cv2 = pytest.importorskip("cv2")

T0 = 1_700_000_000.0
RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR, as OpenCV and the camera source give them


def meta(session: str = "s1", fps: float = 20.0) -> VideoMeta:
    return VideoMeta(device_id="cam", session_id=session, started=T0, width=64, height=48, fps=fps)


def image(bgr: tuple[int, int, int], i: int = 0) -> np.ndarray:
    img = np.zeros((48, 64, 3), np.uint8)
    img[:] = bgr
    img[:4, : (i % 60) + 1] = 128  # a bar that grows: frames differ, so JPEG sizes do too
    return img


def decoded_colour(jpeg: bytes) -> tuple[int, int, int]:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    b, g, r = img[24:, :].reshape(-1, 3).mean(axis=0)
    return int(round(b)), int(round(g)), int(round(r))


def write_frames(w: VideoRecordingWriter, n: int, start: int = 0, colour=RED) -> None:
    for i in range(start, start + n):
        w.write_frame(T0 + i / 20.0, image(colour, i))


def test_frames_and_labels_read_back_in_order(tmp_path):
    s = tmp_path / "s1"
    with VideoRecordingWriter(s, meta()) as w:
        w.set_label("walk", T0)
        write_frames(w, 30, 0, RED)
        w.set_label("sit", T0 + 1.5)
        write_frames(w, 30, 30, BLUE)
    assert read_video_meta(s) == meta()
    frames = list(iter_frames(s))
    assert [t for t, _ in frames] == pytest.approx([T0 + i / 20.0 for i in range(60)])
    assert decoded_colour(frames[0][1])[2] > 200 and decoded_colour(frames[-1][1])[0] > 200
    assert w.segments() == [LabelSegment("walk", T0, T0 + 1.5), LabelSegment("sit", T0 + 1.5, T0 + 59 / 20 + 1 / 20)]
    # the part is a Motion-JPEG stream: every frame is a whole JPEG, back to back
    data = (s / "part-00000.mjpeg").read_bytes()
    assert data.count(b"\xff\xd8\xff") == 60 and data.endswith(b"\xff\xd9")
    assert video_session_dirs(tmp_path) == [s]


def test_rotates_by_bytes_and_reads_across_parts(tmp_path):
    s = tmp_path / "s1"
    with VideoRecordingWriter(s, meta(), rotate_bytes=5_000) as w:
        write_frames(w, 40)
        assert len(w.finished_parts()) >= 2
    parts = video_part_files(s)
    assert len(parts) >= 3 and all((p.with_name(index_name(p))).is_file() for p in parts)
    assert all(p.stat().st_size <= 5_000 + 2_000 for p in parts)  # a part passes the size by one frame at most
    assert len(list(iter_frames(s))) == 40
    window = list(iter_frames(s, T0 + 10 / 20, T0 + 20 / 20))
    assert [round((t - T0) * 20) for t, _ in window] == list(range(10, 20))


def test_a_frame_time_that_goes_back_is_raised_to_the_one_before(tmp_path):
    s = tmp_path / "s1"
    with VideoRecordingWriter(s, meta()) as w:
        w.write_frame(T0 + 1.0, image(RED))
        w.write_frame(T0 + 0.5, image(RED))  # a clock step back
    assert [t for t, _ in iter_frames(s)] == [T0 + 1.0, T0 + 1.0]


def test_budget_reached_stops_before_the_frame(tmp_path):
    s = tmp_path / "s1"
    w = VideoRecordingWriter(s, meta(), budget_bytes=6_000)
    with pytest.raises(RecordingFull, match="budget of .* is reached"):
        write_frames(w, 100)
    written = w.samples_written
    assert 3 <= written < 100
    with pytest.raises(RecordingFull):
        write_frames(w, 1)
    w.close()
    assert len(list(iter_frames(s))) == written
    total = sum(p.stat().st_size for p in s.glob("part-*"))
    assert total <= 6_000


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_names_the_path_and_keeps_earlier_parts(tmp_path):
    s = tmp_path / "s1"
    s.mkdir()
    os.symlink("/dev/full", s / "part-00001.mjpeg")
    w = VideoRecordingWriter(s, meta(), rotate_bytes=3_000)
    with pytest.raises(RecordingFull, match=r"part-00001\.mjpeg: disk full"):
        write_frames(w, 50)
    w.close()
    (s / "part-00001.mjpeg").unlink()
    (s / "part-00001.frames.csv").unlink()
    frames = list(iter_frames(s))
    assert len(frames) == w.samples_written - 0 and len(frames) >= 3
    assert all(decoded_colour(j)[2] > 200 for _, j in frames)


_CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from edge_har.core.video_recording_layout import VideoMeta
from edge_har.device.recording.video_writer import VideoRecordingWriter
w = VideoRecordingWriter({session!r}, VideoMeta("cam", "s1", 1.7e9, 64, 48, 20.0), rotate_bytes=20_000, fsync_interval_s=0)
w.set_label("walk", 1.7e9)
img = np.zeros((48, 64, 3), np.uint8)
i = 0
while True:
    img[:] = (0, 0, 255)
    img[:4, : i % 60 + 1] = 128
    w.write_frame(1.7e9 + i / 20, img)
    i += 1
    if i == 50:
        print("written", flush=True)
"""


def test_a_killed_writer_leaves_a_readable_session(tmp_path):
    session = tmp_path / "s1"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), session=str(session))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    frames = list(iter_frames(session))
    assert len(frames) >= 50
    assert all(decoded_colour(j)[2] > 200 for _, j in frames)
    assert np.all(np.diff([t for t, _ in frames]) > 0)
    ds = load_video_dataset(tmp_path, FrameSpec(32, 32, 10.0, window=4), progress=False)
    assert [c.label for c in ds.clips] == ["walk"]  # the open segment reaches past the last frame


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut_frames=st.integers(0, 4000), cut_index=st.integers(0, 400))
def test_a_part_cut_anywhere_reads_as_its_whole_frames(tmp_path_factory, cut_frames, cut_index):
    s = tmp_path_factory.mktemp("cut") / "s1"
    with VideoRecordingWriter(s, meta()) as w:
        write_frames(w, 6)
    part = s / "part-00000.mjpeg"
    index = s / index_name(part)
    full = list(iter_frames(s))
    with open(part, "r+b") as f:
        f.truncate(min(cut_frames, part.stat().st_size))
    with open(index, "r+b") as f:
        f.truncate(min(cut_index, index.stat().st_size))
    got = list(iter_frames(s))
    assert got == full[: len(got)]  # a prefix of what was written, each frame whole
    for _, jpeg in got:
        decoded_colour(jpeg)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["format", "version", "device_id", "session_id", "started", "width", "height", "fps", "jpeg_quality"]
            + ["source", "subject", "model_id", "x"]
        ),
        st.one_of(st.none(), st.booleans(), st.integers(-5, 20_000), st.floats(allow_nan=True), st.text(max_size=20)),
    )
)
def test_any_video_json_is_read_or_refused_with_a_layout_error(tmp_path_factory, doc):
    s = tmp_path_factory.mktemp("meta")
    base = meta().to_json()
    base.update(doc)
    (s / VIDEO_META_FILE).write_text(json.dumps(base))
    try:
        got = read_video_meta(s)
    except LayoutError as exc:
        assert str(s / VIDEO_META_FILE) in str(exc) and "\n" not in str(exc)
    else:
        assert got.width >= 1 and got.fps > 0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_frame_index_is_read_or_refused_with_a_layout_error(tmp_path_factory, tail):
    s = tmp_path_factory.mktemp("idx")
    part = s / "part-00000.mjpeg"
    part.write_bytes(b"\xff\xd8" + b"x" * 1000)
    (s / index_name(part)).write_bytes(b"t,offset,length\n" + tail)
    try:
        refs = read_frame_index(part)
    except LayoutError as exc:
        assert index_name(part) in str(exc)
    else:
        end = 0
        for ref in refs:
            assert ref.offset == end and ref.offset + ref.length <= 1002
            end += ref.length


def test_overlapping_labels_of_two_classes_are_refused_naming_the_lines(tmp_path):
    s = tmp_path / "s1"
    with VideoRecordingWriter(s, meta()) as w:
        write_frames(w, 40)
    write_labels(s, [LabelSegment("walk", T0, T0 + 1.2), LabelSegment("sit", T0 + 1.0, T0 + 2.0)])
    with pytest.raises(VideoDatasetError, match=r"labels.csv: lines 2 \(walk\) and 3 \(sit\) overlap"):
        load_video_dataset(tmp_path, FrameSpec(32, 32, 10.0, window=4), progress=False)


# ---------------------------------------------------------------- edge-har record on a camera


def _clip(path: Path, n: int = 60, fps: float = 20.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        w.write(image(RED if i < n // 2 else BLUE, i))
    w.release()
    return path


def _camera_config(tmp_path: Path, clip: Path) -> Path:
    cfg = tmp_path / "cam.yaml"
    cfg.write_text(
        "device_id: cam1\n"
        f"bundle: {tmp_path / 'no-bundle-yet'}\n"
        f"source: {{type: camera, device: {clip}, realtime: true, stop_at_end: true}}\n"
    )
    return cfg


def test_record_writes_a_camera_session_that_convert_video_reads(tmp_path):
    clip = _clip(tmp_path / "clip.avi")  # 3 s: red, then blue from 1.5 s
    out = tmp_path / "rec"
    proc = record_process(
        ["--config", str(_camera_config(tmp_path, clip)), "--out", str(out), "--classes", "walk,sit"]
        + ["--no-mqtt", "--label-keys"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write("walk\n")
    proc.stdin.flush()
    # the camera plays from the moment the session starts, however long the process took to get there
    # (a loaded machine took ~1 s): the label changes 1.5 s after that, not after the spawn
    early = []
    for line in proc.stderr:
        early.append(line)
        if " started (" in line:
            break
    time.sleep(1.5)
    proc.stdin.write("sit\n")
    proc.stdin.flush()
    stdout, stderr = proc.communicate(timeout=30)
    stderr = "".join(early) + stderr
    assert proc.returncode == 0, stderr
    # a realtime camera drops frames its consumer does not take in time: count what was written
    written = int(re.search(r"stopped: (\d+) frames", stderr).group(1))  # type: ignore[union-attr]
    assert 45 <= written <= 60, stderr
    (session,) = video_session_dirs(out)
    assert read_video_meta(session).width == 64 and read_video_meta(session).fps == 20.0
    ds = load_video_dataset(out, FrameSpec(32, 32, 10.0, window=4), progress=False)
    assert ds.layout == "recorded" and ds.labels == ["sit", "walk"]
    clips = {c.label: c for c in ds.clips}
    assert clips["walk"].subject == "cam1"
    assert clips["walk"].decoded_frames + clips["sit"].decoded_frames == written
    assert 0.25 * written <= clips["walk"].decoded_frames <= 0.75 * written  # the label changed about 1.5 s in
    # frames came back as RGB, sampled at 10 of the camera's 20 fps
    assert clips["walk"].frames[0, 30, 30, 0] > 200 and clips["sit"].frames[-1, 30, 30, 2] > 200
    assert (
        clips["walk"].decoded_frames / 2 - 1
        <= len(clips["walk"])
        <= clips["walk"].decoded_frames / 2 + (60 - written) + 1
    )


def test_record_refuses_push_and_channel_flags_for_a_camera(tmp_path):
    cfg = _camera_config(tmp_path, _clip(tmp_path / "clip.avi", n=5))
    for flags, flag in ((["--push", "http://127.0.0.1:9"], "--push"), (["--channels", "3"], "--channels")):
        proc = record_process(["--config", str(cfg), "--out", str(tmp_path / "rec"), "--classes", "a", *flags])
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 2, stderr
        assert f"{flag}: {cfg} records a camera" in stderr
    proc = record_process(["--config", str(cfg), "--out", str(tmp_path / "rec"), "--jpeg-quality", "101"])
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--jpeg-quality 101" in stderr
    assert not (tmp_path / "rec").exists()


@pytest.mark.slow
def test_convert_video_trains_a_bundle_on_recorded_camera_sessions(tmp_path):
    """Sessions as `record` writes them (three labelled activities each) -> `edge-har convert-video` -> a bundle."""
    pytest.importorskip("tf_keras")
    from convert.video_synthetic import pattern_for, render_clip
    from edge_har.cli import main
    from edge_har.core.bundle import Bundle

    rng = np.random.default_rng(5)
    classes = ("bounce", "orbit", "sweep")
    root = tmp_path / "rec" / "cam1"
    for k in range(8):
        t = T0 + 100.0 * k
        with VideoRecordingWriter(root / f"s{k}", VideoMeta("cam1", f"s{k}", t, 64, 48, 10.0)) as w:
            for name in rng.permutation(classes):
                w.set_label(str(name), t)
                for frame in render_clip(pattern_for(str(name)), 30, (64, 48), 10.0, rng):
                    w.write_frame(t, frame)
                    t += 0.1
                w.set_label(None, t)
                t += 2.0  # the camera looks away between activities: no frames, no label
    out = tmp_path / "bundle"
    args = ["--log-level", "WARNING", "convert-video", "--data", str(tmp_path / "rec"), "--fps", "10"]
    args += ["--stride", "2", "--backbone", "plain", "--input-size", "32", "--conv-filters", "8,16", "--frames", "8"]
    args += [
        "--lstm-units",
        "16",
        "--epochs",
        "15",
        "--batch-size",
        "16",
        "--patience",
        "15",
        "--variants",
        "float32,int8",
    ]
    args += ["--calibration-size", "50", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    bundle = Bundle.load(out)
    assert list(bundle.labels) == list(classes)
    data = bundle.data["provenance"]["dataset"]
    assert data["layout"] == "recorded" and data["clips"] == 24 and data["subjects"] == ["cam1"]
    assert data["classes"] == {name: 8 for name in classes}
