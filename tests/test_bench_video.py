"""``edge-har bench video BUNDLE [--clip FILE] [--quick]``: the camera-path benchmark on the command line.

A sub-command like every suite, with a quick mode, frames/s measured on the user's clip when one is
given, and rounded figures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("tf_keras")

from edge_har.convert.video_synthetic import pattern_for, render_clip, write_clip  # noqa: E402


def edge_har(*args: str) -> int:
    from edge_har.cli import main

    try:
        return main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def video_bundle(tmp_path_factory) -> Path:
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video
    from edge_har.convert.video_synthetic import write_synthetic_clip_dataset

    work = tmp_path_factory.mktemp("bench-video")
    data = write_synthetic_clip_dataset(
        work / "clips", classes=("bounce", "orbit"), clips_per_class=4, seconds=(2.0, 2.5), fps=10, size=(48, 36)
    )
    options = VideoConvertOptions(
        out=work / "bundle",
        data=data,
        stride=2,
        model=VideoModelConfig(
            backbone="plain", weights="none", input_size=32, conv_filters=(4,), frames=4, lstm_units=(8,)
        ),
        train=TrainConfig(epochs=1, batch_size=8, verbose=0),
        variants=("float32", "int8"),
        allow_int8_drop=True,
        allow_degenerate=True,  # a one-epoch model: latency and frames/s do not depend on its accuracy
        clip_model=True,
        progress=False,
    )
    return run_convert_video(options)


@pytest.mark.slow  # a tiny conversion (~40 s) and the quick benchmark
def test_bench_video_quick_on_the_users_clip(video_bundle, tmp_path, capsys):
    clip = write_clip(
        tmp_path / "mine.avi", render_clip(pattern_for("orbit"), 37, (200, 150), 15.0, np.random.default_rng(0)), 15.0
    )
    out = tmp_path / "results"
    assert edge_har("bench", "video", str(video_bundle), "--clip", str(clip), "--quick", "--out", str(out)) == 0
    text = capsys.readouterr().out
    section = json.loads((out / "results.json").read_text())["suites"]["video"]
    assert section["settings"]["quick"] is True and section["fps_clip"]["kind"] == "user clip"
    # frames/s measured on the user's clip: its size, rate and every one of its frames
    assert {r["variant"] for r in section["fps"]} == {"float32", "int8"}
    for row in section["fps"]:
        assert row["frame_size"] == [200, 150] and row["clip_fps"] == 15.0 and row["frames_read"] == 37
        assert row["frames_dropped"] == 0 and row["frames_per_s"] > 0
    assert {(r["variant"], r["part"]) for r in section["parts"]} >= {("int8", "encoder"), ("int8", "head")}
    assert [r["stride"] for r in section["speedup"] if r["variant"] == "int8"] == [1, 4]
    assert "mine.avi (200x150, 15.0 fps, 37 frames)" in text
    # what is printed and written is rounded (no 0.12345678901 ms)
    assert not re.search(r"\d\.\d{4,}", text), text
    rows = section["parts"] + section["speedup"] + section["fps"]
    floats = [v for r in rows for v in r.values() if isinstance(v, float)]
    assert floats and all(round(v, 3) == v for v in floats)


def test_bench_video_refuses_a_sensor_bundle_and_a_missing_clip(tiny_bundle, tmp_path, capsys):
    assert edge_har("bench", "video", str(tiny_bundle), "--quick", "--out", str(tmp_path)) != 0
    assert "bench video needs one from convert-video" in capsys.readouterr().err
    assert edge_har("bench", "video", "--help") == 0
    assert "--clip FILE" in capsys.readouterr().out
