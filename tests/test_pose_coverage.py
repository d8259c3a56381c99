"""Camera figures count what the device publishes: windows with a person, the skipped ones apart, and warnings.

The arithmetic runs on hand-made keypoint features (the person flag is the last value of a
frame's vector); the recording groups and the subject split on small real ``VideoDataset``
objects; the flags through the real command line.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert import pose_coverage as pc
from edge_har.convert.recording_groups import recording_group, shared_groups, suggested_regex
from edge_har.convert.video_datasets import Clip, VideoDataset, VideoDatasetError, split_clips
from edge_har.core import pose
from edge_har.core.frames import FrameSpec


def feats(flags: list[int]) -> np.ndarray:
    """Frames of features whose person flag follows ``flags`` (the other values are noise when present)."""
    out = np.zeros((len(flags), pose.FEATURE_DIM), np.float32)
    rng = np.random.default_rng(len(flags))
    for i, f in enumerate(flags):
        if f:
            out[i, :-1] = rng.normal(size=pose.FEATURE_DIM - 1)
            out[i, -1] = 1.0
    return out


class _Clip:
    def __init__(self, source: str, label: str, padded: int = 0) -> None:
        self.source, self.label, self.padded_frames = source, label, padded


def test_a_window_is_published_when_any_of_its_frames_has_a_person():
    windows = np.stack([feats([0, 0, 0, 0]), feats([0, 0, 0, 1]), feats([1, 1, 1, 1])])
    assert pc.window_has_person(windows).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="windows must be"):
        pc.window_has_person(windows[0])


def test_rates_per_clip_and_per_class_leave_padding_out():
    features = {0: feats([1, 1, 0, 0]), 1: feats([0] * 4), 2: feats([1, 1, 1, 0])}
    clips = [_Clip("/d/a/c0.avi", "box"), _Clip("/d/a/c1.avi", "box"), _Clip("/d/b/c2.avi", "clap", padded=1)]
    rows = pc.clip_rows(features, clips)
    assert [(r["clip"], r["frames"], r["with_person"], r["person_rate"]) for r in rows] == [
        ("c0.avi", 4, 2, 0.5),
        ("c1.avi", 4, 0, 0.0),
        ("c2.avi", 3, 3, 1.0),  # the padded last frame is not a frame of the clip
    ]
    classes = pc.class_rows(rows)
    assert classes["box"] == {"clips": 2, "clips_without_person": 1, "frames": 8, "with_person": 2, "person_rate": 0.25}
    assert classes["clap"]["person_rate"] == 1.0


def coverage(test_has: list[bool], test_y: list[int], labels=("box", "clap"), rate=0.5) -> pc.Coverage:
    rows = [
        {"clip": "c0.avi", "label": "box", "frames": 10, "with_person": 0, "person_rate": 0.0},
        {"clip": "c1.avi", "label": "clap", "frames": 10, "with_person": 9, "person_rate": 0.9},
    ]
    windows = {
        "train": pc.window_counts(np.ones(2, bool), np.array([0, 1]), labels),
        "test": pc.window_counts(np.array(test_has), np.array(test_y), labels),
    }
    return pc.Coverage(rows, pc.class_rows(rows), windows, rate, [])


def test_a_class_mostly_without_a_person_refuses_unless_allowed(caplog):
    cov = coverage([False, False, True, True, True], [0, 0, 0, 1, 1])
    assert cov.windows["test"]["box"] == {"windows": 3, "published": 1, "skipped_no_person": 2}
    with pytest.raises(pc.NoPersonClassError, match=r"'box': 2 of 3 test windows have no person.*--allow-no-person"):
        pc.check_test_classes(cov, allow=False)
    with caplog.at_level(logging.WARNING):
        assert pc.check_test_classes(cov, allow=True) == ["box"]
    assert "--allow-no-person" in caplog.text
    # half skipped is not "mostly": published windows are still scored
    assert pc.check_test_classes(coverage([False, True, True, True], [0, 0, 1, 1]), allow=False) == []


def test_warnings_name_the_clips_without_a_person_and_the_classes_under_the_rate(caplog):
    cov = coverage([True, True], [0, 1])
    with caplog.at_level(logging.WARNING):
        cov.warn()
    assert "1 of 2 clips have no person in any frame" in caplog.text and "c0.avi" in caplog.text
    assert "class 'box': a person in 0% of its frames" in caplog.text and "--min-person-rate 50%" in caplog.text
    assert "class 'clap'" not in caplog.text
    doc = cov.to_json()
    assert doc["clips_without_person"] == ["c0.avi"] and doc["classes_under_rate"] == ["box"]
    assert doc["windows_skipped_no_person"] == {"train": 0, "test": 0}


def test_a_class_without_a_training_window_with_a_person_is_named():
    cov = coverage([True], [1])
    cov.windows["train"] = pc.window_counts(np.array([False, True]), np.array([0, 1]), ("box", "clap"))
    with pytest.raises(pc.ConvertError, match="class\\(es\\) box: no training window has a person"):
        pc.train_classes_check(cov, ["box", "clap"])


def test_the_summary_lines_give_rates_and_skipped_windows_and_no_nan():
    cov = coverage([False, False, True, True, True], [0, 0, 0, 1, 1])
    lines = pc.summary_lines({"pose": {"coverage": cov.to_json()}})
    text = "\n".join(lines)
    assert "box" in text and "0.0% of 10 frames (1 of 1 clips without); 2 of 3 windows skipped" in text
    assert "<< under 50%" in text and "clips with no person: c0.avi" in text
    assert "nan" not in text.lower()
    assert pc.summary_lines({"pose": {}}) == [] and pc.summary_lines({}) == []


# ---------------------------------------------------------------- recording groups and subject splits


def test_recording_groups_from_known_file_names_and_the_subject():
    assert recording_group(_Clip("/x/v_ApplyEyeMakeup_g08_c01.avi", "a")) == ("UCF101 group", "g08")
    assert recording_group(_Clip("/x/person01_boxing_d2_uncomp.avi", "a")) == ("KTH person", "person01")
    assert recording_group(_Clip("/x/clip7.mp4", "a")) is None
    subject = Clip(np.zeros((1, 2, 2, 3), np.uint8), "a", "/x/person01_boxing.avi", subject="s3")
    assert recording_group(subject) == ("subject", "s3")
    assert suggested_regex("KTH person") == r"^(person\d+)_" and suggested_regex("subject") is None


def dataset(names: list[tuple[str, str]], subjects: list[str | None] | None = None) -> VideoDataset:
    spec = FrameSpec(height=8, width=8, fps=10.0, window=2, stride=1)
    clips = [
        Clip(np.zeros((4, 8, 8, 3), np.uint8), label, f"/d/{label}/{name}", (subjects or [None] * len(names))[i])
        for i, (name, label) in enumerate(names)
    ]
    return VideoDataset(Path("/d"), "toy", "folders", sorted({c.label for c in clips}), clips, spec)


def test_a_clip_split_that_tests_on_trained_recordings_warns_and_records_them(caplog):
    names = [(f"person0{p}_{a}_d{d}_uncomp.avi", a) for p in (1, 2) for a in ("boxing", "clapping") for d in (1, 2, 3)]
    data = dataset(names)
    with caplog.at_level(logging.WARNING):
        split = split_clips(data, test_fraction=0.34, val_fraction=0.0, seed=3)
    _, shared = shared_groups(data.clips, split.train, split.test)
    assert shared and split.shared_groups == shared and split.describe()["shared_recording_groups"] == shared
    assert "share" in caplog.text and "KTH person" in caplog.text and "optimistic" in caplog.text
    assert r"--subject-regex '^(person\d+)_'" in caplog.text
    caplog.clear()
    # split by those people instead: nothing shared, nothing said
    data = dataset(names, subjects=[n.split("_")[0] for n, _ in names])
    with caplog.at_level(logging.WARNING):
        split = split_clips(data, by="subject", test_subjects=["person02"], val_fraction=0.0)
    assert split.shared_groups == [] and "share" not in caplog.text


def test_a_subject_split_with_one_subject_says_so():
    names = [(f"person01_{a}_d{d}.avi", a) for a in ("boxing", "clapping") for d in (1, 2)]
    one = dataset(names, subjects=["person01"] * len(names))
    with pytest.raises(VideoDatasetError, match=r"at least two subjects.*finds one \(person01\) in all 4 clips"):
        split_clips(one, by="subject", test_subjects=["person01"])
    two = dataset(names, subjects=["a", "a", "b", "b"])
    with pytest.raises(VideoDatasetError, match="names every subject \\(a, b\\): none is left to train on"):
        split_clips(two, by="subject", test_subjects=["a", "b"])


# ---------------------------------------------------------------- the flags


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_har", *args], capture_output=True, text=True, timeout=120)


def test_the_person_flags_are_documented_and_checked(tmp_path):
    shown = _cli("convert-video", "--help")
    text = " ".join(shown.stdout.split())
    assert "--allow-no-person" in text and "--min-person-rate" in text and "publish (almost) nothing" in text
    bad = _cli("convert-video", "--data", str(tmp_path), "--min-person-rate", "0.3", "--out", str(tmp_path / "b"))
    assert bad.returncode != 0 and "--min-person-rate is for --backbone pose" in bad.stderr
    shown = _cli("evaluate-video", "--help")
    assert "--keypoint-cache" in shown.stdout


# ---------------------------------------------------------------- a real pose conversion (BlazePose models)


@pytest.mark.slow
@pytest.mark.pose
def test_a_pose_conversion_scores_only_what_the_device_publishes(tmp_path):
    """Drawn clips: 'wave' and 'still', and 'gone' whose person shows only in its last frames.

    'gone' is refused (7 of 9 test windows without a person); allowed, the bundle's figures are on
    the published windows, the skipped ones are counted per class, and evaluate-video agrees.
    """
    from edge_har.convert.pose_pipeline import PoseOptions
    from edge_har.convert.pose_synthetic import arm_track, draw_person, write_pose_dataset
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video
    from edge_har.convert.video_synthetic import write_clip
    from edge_har.core.bundle import Bundle

    models = _pose_models()
    data = write_pose_dataset(tmp_path / "data", {"wave": 3, "still": 3}, frames=40, fps=10.0, empty_frames=12)
    (data / "gone").mkdir()
    for i in range(3):
        imgs = [np.full((120, 160, 3), (170, 180, 160), np.uint8) for _ in range(32)]
        imgs += [draw_person(a, 160, 120) for a in arm_track("wave", 8, 10.0, phase=0.5 * i)]
        write_clip(data / "gone" / f"p{i + 1:02d}_gone.avi", np.stack(imgs), 10.0)

    def options(allow: bool) -> VideoConvertOptions:
        return VideoConvertOptions(
            out=tmp_path / "bundle",
            data=data,
            split_options={"by": "clip", "test_fraction": 0.34, "val_fraction": 0.0, "seed": 1},
            fps=10.0,
            stride=4,
            model=VideoModelConfig(backbone="plain", weights="none", frames=8, lstm_units=(16,)),
            train=TrainConfig(epochs=30, batch_size=8, patience=30, verbose=0),
            calibration_size=16,
            progress=False,
            pose=PoseOptions(models, height=120, width=160, cache_dir=tmp_path / "cache", allow_no_person=allow),
        )

    with pytest.raises(pc.NoPersonClassError, match=r"'gone': 7 of 9 test windows have no person"):
        run_convert_video(options(False))
    assert not (tmp_path / "bundle").exists()

    bundle = Bundle.load(run_convert_video(options(True)))
    cov = bundle.data["pose"]["coverage"]
    assert cov["allowed_no_person_classes"] == ["gone"]
    assert cov["windows"]["test"]["gone"] == {"windows": 9, "published": 2, "skipped_no_person": 7}
    assert cov["windows"]["test"]["wave"]["skipped_no_person"] == 2  # frames 0-11 blank: windows at 0 and 4
    assert cov["per_class"]["gone"]["person_rate"] == pytest.approx(0.2, abs=0.03)
    assert "gone" in cov["classes_under_rate"] and "wave" not in cov["classes_under_rate"]
    split = bundle.metrics["split"]
    assert split["windows"]["test"] == 27 - split["windows_skipped_no_person"]["test"] == 27 - 11
    assert bundle.variant("int8").metrics["n_windows"] == 16  # the gate and the scores: published windows only
    assert bundle.metrics["test_windows_no_person"]["gone"]["skipped_no_person"] == 7

    from edge_har.convert.cli import summary_table

    table = summary_table(bundle.root)
    assert "gone" in table and "7 of 9 windows skipped" in table and "nan" not in table

    # evaluate-video, through the command line, reads the keypoints convert-video cached
    cache = tmp_path / "cache"
    before = sorted(p.stat().st_mtime_ns for p in cache.glob("*.npz"))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_har",
            "evaluate-video",
            str(bundle.root),
            "--data",
            str(data),
            "--variant",
            "int8",
            "--keypoint-cache",
            str(cache),
            "--out",
            str(tmp_path / "eval"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "7 of 9 windows skipped" in run.stdout and "nan" not in run.stdout
    assert sorted(p.stat().st_mtime_ns for p in cache.glob("*.npz")) == before  # read, not computed again
    import json

    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["data"]["windows"] == 16 and summary["data"]["windows_skipped_no_person"] == 11
    assert summary["variants"]["int8"]["accuracy"] == bundle.variant("int8").metrics["accuracy"]


def _pose_models() -> Path:
    """The BlazePose models the pose tests fetch (skipped without them, failed in CI)."""
    from tests.pose_bundles import pose_models_dir

    return pose_models_dir()
