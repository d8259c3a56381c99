"""``edge-har bench pose BUNDLE --data CLIPS``: the pose suite on the command line.

The default suite checks the wiring and the tables without the pose models: the sub-command and
its help, the person-found rates per clip and per class, and that a figure that could not be
measured is '-' with its reason (never ``nan``). The tests marked ``pose`` run the suite on a real
small pose bundle (tests/pose_bundles.py) and the real KTH clips, and ``bench video`` given a pose
bundle.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_har.benchmarks import pose as pose_bench
from tests.pose_bundles import FPS, blank, kth_clip, person, pose_bundle


def edge_har(*args: str) -> int:
    from edge_har.cli import main

    try:
        return main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


def section_with_gaps() -> dict[str, Any]:
    """A pose section as run_pose writes it, with every kind of missing figure."""
    clips = [
        {"clip": "a.mp4", "label": "boxing", "frames": 100, "with_person": 90, "share": 0.9, "detector_runs": 3},
        {"clip": "b.mp4", "label": "boxing", "frames": 50, "with_person": 50, "share": 1.0, "detector_runs": 1},
        {"clip": "c.avi", "label": "clapping", "frames": 40, "with_person": 0, "share": 0.0, "detector_runs": 40},
    ]
    none = {k: None for k in ("mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")}
    return {
        "suite": "pose",
        "keypoints": clips,
        "keypoints_by_class": pose_bench.class_rates(clips),
        "latency": [
            {
                "variant": "all",
                "part": "detector",
                "threads": 1,
                "n": 40,
                "p50_ms": 7.812,
                "p90_ms": 9.1,
                "mean_ms": 8.0,
            },
            {"variant": "all", "part": "landmarks", "threads": 1, "n": 0, **none, "note": "no person: nothing to time"},
            {"variant": "int8", "part": "head", "threads": 1, "n": 0, **none, "note": "clips shorter than a window"},
        ],
        "fps_clip": {"file": "/x/pose_320x240.avi", "source": "/d/a.mp4", "frames": 390, "fps": 25.0},
        "fps": [
            {
                "variant": "int8",
                "threads": 1,
                "frames_per_s": 91.26,
                "encoded_frames_per_s": 36.5,
                "predictions": 38,
                "windows_no_person": 3,
                "no_person_s": 1.25,
            }
        ],
        "daemon": [
            {"variant": "int8", "error": "Traceback ...\nOSError: camera gone\n"},
        ],
        "daemon_note": None,
    }


def test_the_tables_say_why_a_figure_is_missing_and_never_print_nan():
    text = pose_bench.format_pose(section_with_gaps())
    assert "nan" not in text.lower()
    # person found per clip and per class, as rates
    assert re.search(r"\| a\.mp4\s+\| boxing\s+\|\s+100 \|\s+90 \|\s+90\.0% \|", text), text
    assert re.search(r"\| boxing\s+\|\s+2 \|\s+150 \|\s+140 \|\s+93\.3% \|", text), text
    assert re.search(r"\| clapping\s+\|\s+1 \|\s+40 \|\s+0 \|\s+0\.0% \|", text), text
    # a latency row without figures: '-' and a numbered note with the reason
    assert re.search(r"\| landmarks \[1\]\s+\|\s+1 \| -\s+\| -\s+\| -\s+\|", text), text
    assert "[1] no person: nothing to time" in text and "[2] clips shorter than a window" in text
    assert re.search(r"\| two stages \| int8\s+\|\s+1 \|\s+91\.3 \|\s+36\.5 \|\s+38 \|\s+3 \|\s+1\.2 \|", text), text
    assert "daemon int8 failed: OSError: camera gone" in text
    assert "encoded/s: the daemon reports no per-frame count" in text


def test_person_found_rates_per_class_sum_the_clips():
    rows = section_with_gaps()["keypoints_by_class"]
    assert rows == [
        {"label": "boxing", "clips": 2, "frames": 150, "with_person": 140, "share": 0.9333},
        {"label": "clapping", "clips": 1, "frames": 40, "with_person": 0, "share": 0.0},
    ]
    assert pose_bench.class_rates([{"label": "x", "frames": 0, "with_person": 0}])[0]["share"] is None


def test_bench_video_fps_table_prints_a_dash_not_nan_without_predictions():
    from edge_har.benchmarks.video import format_fps

    row = {
        "variant": "int8",
        "threads": 1,
        "frames_per_s": 80.0,
        "encoded_frames_per_s": 30.0,
        "predictions_per_s": 0.0,
        "frames_dropped": 0,
        "e2e_ms_p50": None,
        "clip": "short.avi",
        "frame_size": [320, 240],
        "clip_fps": 25.0,
        "frames_read": 5,
    }
    text = format_fps([row])
    assert "nan" not in text and re.search(r"0\s+-  short\.avi", text), text
    assert "no prediction came out of the clip" in text


def test_without_mosquitto_the_daemon_row_is_left_out_with_the_reason(monkeypatch, tmp_path):
    import edge_har.mqtt.local_broker as local_broker

    monkeypatch.setattr(local_broker, "find_mosquitto", lambda binary=None: None)
    rows, why = pose_bench._daemon_rows(tmp_path, ["int8"], tmp_path / "x.avi", 10, pose_bench.PoseSettings(), tmp_path)
    assert rows == [] and why is not None and why.startswith("the daemon was not run: mosquitto is not installed")
    section = section_with_gaps() | {"daemon": rows, "daemon_note": why}
    text = pose_bench.format_pose(section)
    assert "the daemon was not run: mosquitto is not installed" in text and "| daemon" not in text


def test_bench_pose_is_a_suite_with_a_help_that_says_what_it_measures(capsys):
    assert edge_har("bench", "--help") == 0
    assert re.search(r"\n\s+pose\s+a pose bundle: a person found per clip and class", capsys.readouterr().out)
    assert edge_har("bench", "pose", "--help") == 0
    text = capsys.readouterr().out
    for words in ("--data CLIPS", "--no-daemon", "person found", "windows_no_person", "no_person_s", "'-'", "--quick"):
        assert words in text, words
    assert edge_har("bench", "pose", "some-bundle") == 2  # --data is required
    assert "--data" in capsys.readouterr().err


def test_bench_pose_refuses_a_sensor_bundle_in_one_line(tiny_bundle, tmp_path, capsys):
    assert edge_har("bench", "pose", str(tiny_bundle), "--data", str(tmp_path), "--out", str(tmp_path)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bench pose needs one from convert-video --backbone pose" in err[0], err


# ---------------------------------------------------------------- with a real pose bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return pose_bundle(tmp_path_factory)


@pytest.mark.pose
def test_bench_pose_on_a_kth_clip_and_a_room_without_anyone(bundle, tmp_path, capsys):
    """The clips: a real KTH clip (a person in every frame) and one of 3 s without anyone, then the drawn
    person; the fps file is the empty-room clip, so the two stages and the daemon skip windows."""
    from edge_har.convert.video_synthetic import write_clip

    data = tmp_path / "clips"
    (data / "boxing").mkdir(parents=True)
    shutil.copy(kth_clip(), data / "boxing" / kth_clip().name)
    (data / "aempty").mkdir()  # sorted first: the fps run's file
    write_clip(data / "aempty" / "room.avi", np.stack([blank()] * 30 + [person()] * 20), FPS)
    out = tmp_path / "out"
    code = edge_har(
        "bench", "pose", str(bundle), "--data", str(data), "--quick", "--variants", "int8", "--out", str(out)
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "nan" not in text.lower()
    section = json.loads((out / "results.json").read_text())["suites"]["pose"]
    clips = {r["clip"]: r for r in section["keypoints"]}
    assert clips[kth_clip().name]["share"] == 1.0 and clips[kth_clip().name]["label"] == "boxing"
    assert clips["room.avi"]["with_person"] == 20 and clips["room.avi"]["share"] == 0.4
    by_class = {r["label"]: r for r in section["keypoints_by_class"]}
    assert by_class["aempty"]["share"] == 0.4 and by_class["boxing"]["frames"] == clips[kth_clip().name]["frames"]
    assert "40.0%" in text and "100.0%" in text
    parts = {(r["variant"], r["part"]) for r in section["latency"]}
    assert parts == {
        ("all", "detector"),
        ("all", "landmarks"),
        ("all", "encoder (tracked, per frame)"),
        ("int8", "head"),
    }
    assert all(r["p50_ms"] > 0 for r in section["latency"])  # every figure measured here
    (two,) = section["fps"]
    assert two["windows_no_person"] == 1 + (30 - 8) // 4 and two["no_person_s"] == 0.0
    (daemon,) = section["daemon"]
    assert "error" not in daemon, daemon
    assert daemon["windows_no_person"] == two["windows_no_person"] and daemon["no_person_s"] == 0.0
    assert re.search(r"\| daemon\s+\| int8\s+\|\s+1 \|\s+[\d.]+ \| -\s+\|\s+\d+ \|\s+6 \|\s+0\.0 \|", text), text


@pytest.mark.pose
def test_bench_video_given_a_pose_bundle_runs_the_pose_suite(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    code = edge_har(
        "bench", "video", str(bundle), "--clip", str(kth_clip()), "--quick", "--variants", "int8", "--out", str(out)
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "a pose bundle; running the pose suite (edge-har bench pose)" in text and "nan" not in text.lower()
    section = json.loads((out / "results.json").read_text())["suites"]["pose"]
    assert [r["clip"] for r in section["keypoints"]] == [kth_clip().name]
    assert section["daemon"] == []  # as for a video bundle, the real daemon only with --broker
    assert "the daemon was not run (bench video runs it with --broker HOST[:PORT])" in text
    # without --clip it uses the bundle's training clips; when they are gone it says what to run instead
    moved = tmp_path / "moved"
    shutil.copytree(bundle, moved)
    meta = json.loads((moved / "bundle.json").read_text())
    meta["provenance"]["dataset"]["path"] = str(tmp_path / "gone")
    (moved / "bundle.json").write_text(json.dumps(meta))
    assert edge_har("bench", "video", str(moved), "--quick", "--out", str(out)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"measured by edge-har bench pose {moved} --data CLIPS" in err[0], err
