"""Frame preprocessing and the video data set loaders, on files the tests write with OpenCV.

The real KTH clips in ../shared/data/video are decoded too when that shared
directory exists (it is real data, not test data, so its absence skips).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edge_har.convert.video_datasets import (  # noqa: E402
    VideoDatasetError,
    decode_clip,
    load_video_dataset,
    window_index,
)
from edge_har.convert.video_synthetic import (  # noqa: E402
    pattern_for,
    render_clip,
    write_clip,
    write_synthetic_clip_dataset,
    write_synthetic_image_dataset,
)
from edge_har.core.frames import (  # noqa: E402
    FrameError,
    FrameSampler,
    FrameSpec,
    normalise_frames,
    preprocess_frame,
    resize_frame,
    sampled_indices,
)
from edge_har.core.preprocessing import Preprocessing  # noqa: E402

KTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "kth-partial"
SPEC = FrameSpec(height=24, width=32, fps=10, window=6, stride=3)


# ---------------------------------------------------------------- frames


def test_frame_spec_round_trips_through_bundle_preprocessing():
    spec = FrameSpec(
        96, 128, fps=12.5, window=8, stride=2, scale=1 / 127.5, offset=-1.0, fit="crop", interpolation="linear"
    )
    data = spec.to_json()
    # The generic reader (sensor Preprocessing) understands a video bundle's preprocessing.
    pre = Preprocessing.from_json(data)
    assert (pre.sample_rate_hz, pre.window, pre.stride, pre.channels) == (12.5, 8, 2, ("R", "G", "B"))
    assert FrameSpec.from_json(data) == spec
    broken = dict(data)
    del broken["frame"]
    with pytest.raises(FrameError, match="frame"):
        FrameSpec.from_json(broken, where="x/bundle.json: preprocessing")


def test_frame_spec_rejects_bad_values():
    with pytest.raises(FrameError, match="fit"):
        FrameSpec(32, 32, fps=10, fit="zoom")
    with pytest.raises(FrameError, match="fps"):
        FrameSpec(32, 32, fps=0)
    with pytest.raises(FrameError, match="8x8"):
        FrameSpec(4, 32, fps=10)


def test_sampler_keeps_frames_on_the_model_rate():
    assert sampled_indices(10, 30, 10) == [0, 3, 6, 9]
    # 25 -> 10 fps: slots every 0.1 s, the first frame at or after each slot.
    assert sampled_indices(13, 25, 10) == [0, 3, 5, 8, 10]
    assert len(sampled_indices(390, 25, 10)) == 156
    assert sampled_indices(5, 10, 30) == [0, 1, 2, 3, 4]  # a slower source keeps every frame
    sampler = FrameSampler(10)
    assert sampler.keep(0.0) and not sampler.keep(0.05) and sampler.keep(0.1)
    # After a gap (camera lost) the slots restart instead of bursting.
    assert sampler.keep(5.0) and not sampler.keep(5.05) and sampler.keep(5.1)


def test_resize_converts_to_rgb_and_handles_grey_and_crop():
    bgr = np.zeros((120, 160, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR
    out = resize_frame(bgr, SPEC)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert (out[..., 2] == 255).all() and (out[..., :2] == 0).all()  # blue is the last channel in RGB
    grey = np.full((120, 160), 77, np.uint8)
    assert (resize_frame(grey, SPEC) == 77).all()
    # crop: a wide frame whose sides are white loses them at a square aspect; stretch keeps them.
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100] = 255
    wide[:, 200:] = 255
    square = FrameSpec(16, 16, fps=10)
    assert resize_frame(wide, square.replace(fit="crop")).max() == 0
    assert resize_frame(wide, square).max() == 255


def test_normalisation_follows_the_spec():
    spec = FrameSpec(8, 8, fps=5, scale=1 / 127.5, offset=-1.0)
    frames = np.stack([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)])
    out = normalise_frames(frames, spec)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], 1.0)
    with_stats = spec.replace(mean=(0.5,), std=(2.0,))
    np.testing.assert_allclose(normalise_frames(frames, with_stats)[1], 0.25)
    np.testing.assert_allclose(preprocess_frame(np.full((30, 40, 3), 255, np.uint8), spec), 1.0)
    with pytest.raises(FrameError, match="shape"):
        normalise_frames(np.zeros((4, 4, 3), np.uint8), spec)


# ---------------------------------------------------------------- clip folders


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory) -> Path:
    return write_synthetic_clip_dataset(
        tmp_path_factory.mktemp("clips"), classes=("sweep", "bounce", "orbit"), clips_per_class=3, seconds=2.0, fps=10
    )


def test_clip_folders_load_with_labels_subjects_and_rate(clip_root):
    spec = SPEC.replace(fps=5)
    ds = load_video_dataset(clip_root, spec, subject_regex=r"_s(\d+)$", progress=False)
    assert ds.layout == "clips"
    assert ds.labels == ["bounce", "orbit", "sweep"]  # folder names, sorted
    assert ds.class_counts() == {"bounce": 3, "orbit": 3, "sweep": 3}
    assert {c.subject for c in ds.clips} == {"1", "2", "3"}
    for clip in ds.clips:
        assert clip.source_fps == pytest.approx(10.0)
        assert clip.decoded_frames == 20
        assert clip.frames.shape == (10, 24, 32, 3)  # 20 frames at 10 fps sampled to 5 fps
        assert clip.frames.dtype == np.uint8
    info = ds.describe()
    assert info["clips"] == 9 and info["frame_size"] == [32, 24] and len(info["file_list_sha256"]) == 64


def test_decoded_frames_match_what_was_written(tmp_path):
    frames = render_clip(pattern_for("orbit"), 12, (64, 48), 10.0, np.random.default_rng(1))
    path = write_clip(tmp_path / "orbit.avi", frames, 10.0)
    spec = FrameSpec(48, 64, fps=10, window=1)
    decoded, fps, n = decode_clip(path, spec)
    assert (n, fps, decoded.shape) == (12, 10.0, (12, 48, 64, 3))
    # MJPG is lossy: compare the decoded RGB frames with the written BGR ones loosely.
    diff = np.abs(decoded.astype(int) - frames[..., ::-1].astype(int))
    assert diff.mean() < 6


def test_mp4_clips_decode(tmp_path):
    frames = render_clip(pattern_for("sweep"), 15, (64, 48), 15.0, np.random.default_rng(2))
    try:
        path = write_clip(tmp_path / "sweep.mp4", frames, 15.0, fourcc="mp4v")
    except OSError as exc:
        pytest.skip(f"this OpenCV build cannot write MPEG-4: {exc}")
    decoded, fps, n = decode_clip(path, FrameSpec(24, 32, fps=5))
    assert n == 15 and fps == pytest.approx(15.0) and len(decoded) == 5


def test_unreadable_files_are_named_and_skipped(tmp_path, caplog):
    root = write_synthetic_clip_dataset(tmp_path / "data", classes=("sweep", "pulse"), clips_per_class=2, seconds=1.5)
    (root / "sweep" / "broken.avi").write_bytes(b"this is not a video" * 50)
    (root / "pulse" / "empty.mp4").write_bytes(b"")
    (root / "pulse" / "notes.txt").write_text("ignored: not a video extension")
    with caplog.at_level(logging.WARNING):
        ds = load_video_dataset(root, SPEC, progress=False)
    assert ds.class_counts() == {"pulse": 2, "sweep": 2}
    skipped = {Path(f).name for f, _ in ds.skipped_files}
    assert skipped == {"broken.avi", "empty.mp4"}
    assert "broken.avi" in caplog.text and "empty.mp4" in caplog.text
    assert ds.describe()["skipped_files"][0]["reason"]


def test_a_class_with_only_unreadable_files_is_an_error(tmp_path):
    root = write_synthetic_clip_dataset(tmp_path / "data", classes=("sweep",), clips_per_class=2, seconds=1.5)
    (root / "junk").mkdir()
    (root / "junk" / "a.avi").write_bytes(b"garbage")
    with pytest.raises(VideoDatasetError, match="junk"):
        load_video_dataset(root, SPEC, progress=False)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = write_synthetic_clip_dataset(tmp_path / "data", classes=("sweep",), clips_per_class=1, seconds=1.5)
    (root / "idle").mkdir()
    with pytest.raises(VideoDatasetError, match=r"idle: empty class folder"):
        load_video_dataset(root, SPEC, progress=False)
    with pytest.raises(VideoDatasetError, match="does not exist"):
        load_video_dataset(tmp_path / "nowhere", SPEC)


def test_short_clips_are_padded_or_skipped_with_a_count(tmp_path, caplog):
    root = tmp_path / "data"
    write_synthetic_clip_dataset(root, classes=("sweep", "bounce"), clips_per_class=2, seconds=2.0, fps=10)
    short = render_clip(pattern_for("sweep"), 3, (64, 48), 10.0, np.random.default_rng(3))
    write_clip(root / "sweep" / "short.avi", short, 10.0)
    spec = SPEC.replace(fps=10, window=6)
    with caplog.at_level(logging.WARNING):
        padded = load_video_dataset(root, spec, short="pad", progress=False)
    assert padded.short_padded == 1 and padded.short_skipped == 0
    clip = next(c for c in padded.clips if c.source.endswith("short.avi"))
    assert len(clip) == 6 and clip.padded_frames == 3
    assert (clip.frames[3:] == clip.frames[2]).all()  # the last frame repeated
    assert "padded" in caplog.text
    skipped = load_video_dataset(root, spec, short="skip", progress=False)
    assert skipped.short_skipped == 1 and len(skipped.clips) == 4
    assert skipped.describe()["short_clips"] == {"policy": "skip", "padded": 0, "skipped": 1}


def test_windows_gather_frames_per_clip(clip_root):
    ds = load_video_dataset(clip_root, SPEC, progress=False)  # 20 frames per clip at 10 fps
    index = window_index(ds, [0, 4], window=6, stride=3)
    assert len(index) == 2 * 5  # starts 0, 3, 6, 9, 12 in each 20-frame clip
    x = index.gather([c.frames for c in ds.clips])
    assert x.shape == (10, 6, 24, 32, 3)
    np.testing.assert_array_equal(x[1], ds.clips[0].frames[3:9])
    assert list(index.y[:5]) == [ds.labels.index(ds.clips[0].label)] * 5


# ---------------------------------------------------------------- still images


def test_image_csv_layout(tmp_path, caplog):
    root = write_synthetic_image_dataset(tmp_path / "imgs", classes=("sweep", "pulse"), images_per_class=4)
    with open(root / "train.csv", "a") as fh:
        fh.write("missing.png,sweep\n")
    spec = FrameSpec(32, 32, fps=1, window=1)
    with caplog.at_level(logging.WARNING):
        ds = load_video_dataset(root, spec, progress=False)
    assert ds.layout == "images" and ds.labels == ["pulse", "sweep"]
    assert ds.class_counts() == {"pulse": 4, "sweep": 4}
    assert all(c.frames.shape == (1, 32, 32, 3) for c in ds.clips)
    assert "missing.png" in caplog.text and Path(ds.skipped_files[0][0]).name == "missing.png"


def test_image_csv_errors_name_file_and_line(tmp_path):
    root = write_synthetic_image_dataset(tmp_path / "imgs", classes=("sweep", "pulse"), images_per_class=2)
    text = (root / "train.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join(text[:3] + ["img_0000.png,sweep,extra"] + text[3:]) + "\n")
    with pytest.raises(VideoDatasetError, match=r"train\.csv, line 4: 3 columns"):
        load_video_dataset(root, FrameSpec(32, 32, fps=1), progress=False)
    (root / "train.csv").write_text("file,class\nimg_0000.png,sweep\n")
    with pytest.raises(VideoDatasetError, match=r"no train\.csv|no column 'filename'"):
        load_video_dataset(root, FrameSpec(32, 32, fps=1), layout="images", progress=False)


# ---------------------------------------------------------------- real clips (shared data)


@pytest.mark.skipif(not KTH.is_dir(), reason=f"real KTH clips not present at {KTH} (shared data, not test data)")
def test_real_kth_clips_decode_avi_and_h264_mp4():
    files = sorted(p for p in KTH.rglob("*") if p.suffix.lower() in (".avi", ".mp4"))
    assert {p.suffix.lower() for p in files} == {".avi", ".mp4"}
    for path in files:
        cap = cv2.VideoCapture(str(path))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (120, 160, 3), path
        if path.suffix.lower() == ".mp4":
            assert fourcc.lower() in ("h264", "avc1"), (path, fourcc)
        frames, fps, decoded = decode_clip(path, FrameSpec(120, 160, fps=25))
        assert fps == pytest.approx(25.0)
        assert decoded == declared and len(frames) == decoded, path  # every frame decodes
        assert frames.std() > 5  # real picture content, not a blank stream
    ds = load_video_dataset(
        KTH, FrameSpec(32, 32, fps=10, window=8, stride=4), subject_regex=r"person(\d+)", progress=False
    )
    assert set(ds.labels) <= {"boxing", "handclapping", "handwaving", "jogging", "running", "walking"}
    assert not ds.skipped_files and all(c.subject for c in ds.clips)


def _frames_of_clips_as_images(root: Path, clips_per_class: int = 5, frames_per_clip: int = 4) -> Path:
    """The image layout as people make it from video: several frames cut from each clip, named after it."""
    (root / "train").mkdir(parents=True)
    rows = ["filename,label"]
    rng = np.random.default_rng(5)
    for label in ("sweep", "pulse", "orbit"):
        for c in range(clips_per_class):
            for f, frame in enumerate(render_clip(pattern_for(label), frames_per_clip, (40, 30), 10.0, rng)):
                name = f"{label}{c:02d}_f{f:03d}.png"
                assert cv2.imwrite(str(root / "train" / name), frame)
                rows.append(f"{name},{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def test_subject_regex_keeps_the_frames_of_one_clip_on_one_side_of_an_image_split(tmp_path):
    """--subject-regex used to be ignored for train.csv, so a clip's frames were split across train and test."""
    from edge_har.convert.video_datasets import split_clips

    root = _frames_of_clips_as_images(tmp_path / "frames")
    spec = FrameSpec(32, 32, fps=1, window=1)
    ds = load_video_dataset(root, spec, subject_regex=r"^([a-z]+\d+)_f", progress=False)
    assert ds.layout == "images" and len(ds.clips) == 60
    assert {c.subject for c in ds.clips} == {
        f"{label}{c:02d}" for label in ("sweep", "pulse", "orbit") for c in range(5)
    }
    assert ds.describe()["subjects"][:2] == ["orbit00", "orbit01"]
    for seed in range(5):
        split = split_clips(ds, test_fraction=0.2, val_fraction=0.2, seed=seed)
        sides = {name: {ds.clips[i].subject for i in getattr(split, name)} for name in ("train", "val", "test")}
        assert not (sides["train"] & sides["test"]) and not (sides["train"] & sides["val"])
        assert not (sides["val"] & sides["test"])
        assert sorted(split.train + split.val + split.test) == list(range(60))
        assert {ds.clips[i].label for i in split.test} == {"sweep", "pulse", "orbit"}  # still stratified
        assert all(len(getattr(split, name)) % 4 == 0 for name in ("train", "val", "test"))  # whole clips
    by_subject = split_clips(ds, by="subject", test_subjects=["pulse03", "orbit01"], val_fraction=0.2)
    assert {ds.clips[i].subject for i in by_subject.test} == {"pulse03", "orbit01"} and len(by_subject.test) == 8
    # without the regex each image is its own unit: the frames of one clip do land on both sides
    plain = load_video_dataset(root, spec, progress=False)
    split = split_clips(plain, test_fraction=0.2, val_fraction=0.2, seed=0)
    stem = lambda i: Path(plain.clips[i].source).name.split("_f")[0]  # noqa: E731
    assert {stem(i) for i in split.train} & {stem(i) for i in split.test}
