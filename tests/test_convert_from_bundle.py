"""``edge-har convert --from-bundle``: a real bundle fine-tuned on a user's own set, and its one-line errors.

The parent is the session's ``tiny_bundle`` (a real conversion, labels Sit/Walk/Wave, HMP channels
x, y, z). The user's sets are written by the same synthetic writer (another seed, one subject) or
by ``write_raw_set`` (other channel names). Error paths run before any training (default run);
the fine-tunes, with their TFLite conversions, are slow tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.cli import main
from edge_har.convert.synthetic import write_synthetic_imu_dataset

pytest.importorskip("tensorflow")


def user_set(root: Path, classes=("walk", "sit", "wave"), seed: int = 9) -> Path:
    return write_synthetic_imu_dataset(
        root, classes=classes, recordings_per_class=4, subjects=1, seconds=(10.0, 14.0), seed=seed
    )


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("edge-har convert: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- error paths (no training)


def test_channel_mismatch_names_both_lists(tiny_bundle, tmp_path, capsys):
    from tests.plugins.raw_set import COLUMNS, NAME_REGEX, RATE, write_raw_set

    data = write_raw_set(tmp_path / "raw")
    argv = ["convert", "--from-bundle", str(tiny_bundle), "--data", str(data), "--out", str(tmp_path / "new")]
    argv += ["--name-regex", NAME_REGEX, "--sample-rate", f"{RATE:g}", "--columns", ",".join(map(str, COLUMNS))]
    argv += ["--channels", "ax,ay,az"]
    code, _, err = run(argv, capsys)
    assert code == 2
    line = error_line(err)
    assert "['ax', 'ay', 'az']" in line and "['x', 'y', 'z']" in line and "--channels x,y,z" in line
    assert not (tmp_path / "new").exists()


def test_unknown_label_names_it_and_add_classes(tiny_bundle, tmp_path, capsys):
    data = user_set(tmp_path / "mine", classes=("walk", "jump"))
    code, _, err = run(
        ["convert", "--from-bundle", str(tiny_bundle), "--data", str(data), "--out", str(tmp_path / "n")], capsys
    )
    assert code == 2
    line = error_line(err)
    assert "'Jump'" in line and "--add-classes" in line and "Sit, Walk, Wave" in line


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("keras_model.h5", "keras_model.h5 is missing"),
        ("model_int8.tflite", "model_int8.tflite is missing"),
        ("bundle.json", "has neither bundle.json nor refused.json"),
        ("refused", "has no bundle.json (a refused conversion is no bundle)"),
    ],
)
def test_missing_bundle_files_are_one_line_errors(tiny_bundle, tmp_path, capsys, damage, expected):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    if damage == "refused":
        (bundle / "bundle.json").rename(bundle / "refused.json")
    else:
        (bundle / damage).unlink()
    data = user_set(tmp_path / "mine")
    code, _, err = run(
        ["convert", "--from-bundle", str(bundle), "--data", str(data), "--out", str(tmp_path / "n")], capsys
    )
    assert code == 2
    assert expected in error_line(err)


def test_from_bundle_needs_data_and_out(tiny_bundle, tmp_path, capsys):
    code, _, err = run(["convert", "--from-bundle", str(tiny_bundle), "--out", str(tmp_path / "n")], capsys)
    assert code == 2 and "give --data MY_SET" in error_line(err)
    code, _, err = run(["convert", "--from-bundle", str(tiny_bundle), "--data", str(tmp_path)], capsys)
    assert code == 2 and "give --out" in error_line(err)
    code, _, err = run(
        ["convert", "--from-bundle", str(tiny_bundle), "--from-keras", str(tiny_bundle), "--data", "x", "--out", "y"],
        capsys,
    )
    assert code == 2 and "exclude each other" in error_line(err)


# ---------------------------------------------------------------- channel and label matching (properties)

BUNDLE_CHANNELS = ("x", "y", "z")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    extra=st.lists(st.sampled_from(["gx", "gy", "t", "ax"]), unique=True, max_size=3),
    order=st.randoms(use_true_random=False),
    drop=st.booleans(),
)
def test_channels_are_matched_by_name(extra, order, drop):
    from edge_har.convert.personalise_path import match_channels
    from edge_har.convert.pipeline import ConvertError
    from edge_har.core.formats.base import Dataset
    from edge_har.core.preprocessing import Preprocessing
    from edge_har.core.recordings import Recording

    names = list(BUNDLE_CHANNELS[1:] if drop else BUNDLE_CHANNELS) + extra
    order.shuffle(names)
    samples = np.arange(5 * len(names), dtype=np.float32).reshape(5, len(names))
    ds = Dataset("d", Path("."), [Recording(samples, "Sit", "r1")], ["Sit"], tuple(names), 50.0)
    pre = Preprocessing(sample_rate_hz=50.0, window=4, stride=2, channels=BUNDLE_CHANNELS)
    if drop:
        with pytest.raises(ConvertError) as info:
            match_channels(ds, pre, "set")
        assert "\n" not in str(info.value) and "missing x" in str(info.value)
        return
    out = match_channels(ds, pre, "set")
    assert out.channels == BUNDLE_CHANNELS
    for i, name in enumerate(BUNDLE_CHANNELS):
        np.testing.assert_array_equal(out.recordings[0].samples[:, i], samples[:, names.index(name)])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["Sit", "Walk", "Wave", "Jump", "Run", "sit"]), unique=True, min_size=1, max_size=5))
def test_labels_map_onto_the_bundle_or_are_appended(data_labels):
    from edge_har.convert.personalise_path import map_labels
    from edge_har.convert.pipeline import ConvertError

    parent = ["Sit", "Walk", "Wave"]
    unknown = [label for label in data_labels if label not in parent]
    labels, remap = map_labels(data_labels, parent, True, "set", "b")
    assert labels == parent + unknown
    assert [labels[i] for i in remap] == data_labels
    if unknown:
        with pytest.raises(ConvertError, match="--add-classes"):
            map_labels(data_labels, parent, False, "set", "b")


# ---------------------------------------------------------------- real fine-tunes


@pytest.mark.slow
def test_personalise_with_a_new_class_end_to_end(tiny_bundle, tiny_dataset_dir, tmp_path, capsys):
    from edge_har.core.bundle import Bundle

    data = user_set(tmp_path / "mine", classes=("walk", "sit", "jump"))
    out = tmp_path / "new"
    argv = ["convert", "--from-bundle", str(tiny_bundle), "--data", str(data), "--add-classes", "--out", str(out)]
    argv += ["--original-data", str(tiny_dataset_dir), "--epochs", "15", "--allow-int8-drop", "--no-progress"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "your held-out windows" in stdout and "the parent's test set" in stdout
    bundle = Bundle.load(out)
    assert bundle.labels == ["Sit", "Walk", "Wave", "Jump"] and not bundle.verify()
    parent = Bundle.load(tiny_bundle)
    assert bundle.preprocessing == parent.preprocessing  # the device feeds it as it fed the parent
    section = bundle.data["training"]["personalisation"]
    assert section["parent"]["model_id"] == parent.model_id
    assert section["added_classes"] == ["Jump"]
    assert bundle.data["provenance"]["dataset"]["personalised_from"]["model_id"] == parent.model_id
    assert bundle.data["provenance"]["dataset"]["path"] == str(data.resolve())
    held = section["held_out"]
    # the parent cannot say Jump: its held-out accuracy is at most the non-Jump share; fine-tuning learns it
    assert held["after"]["accuracy"] > held["before"]["accuracy"]
    assert held["after"]["accuracy"] == pytest.approx(bundle.metrics["variants"]["int8"]["accuracy"], abs=1e-4)
    original = section["original_test"]
    assert original["windows"] > 0 and 0 <= original["after"]["accuracy"] <= 1
    # as many of the parent's training windows as the user's were rehearsed
    assert section["fine_tune"]["rehearsal"]["original_windows"] == section["user_data"]["windows"]["train"]
    report = json.loads((out / "report.json").read_text())
    assert report == section
    md = (out / "report.md").read_text()
    assert "your held-out recordings" in md and "Classes added: Jump." in md
    # the new bundle runs through evaluate on the user's data as recorded (no flags repeated)
    assert main(["evaluate", str(out), "--variant", "int8", "--out", str(tmp_path / "eval"), "--no-progress"]) == 0


@pytest.mark.slow
def test_personalise_skips_the_original_set_when_it_is_gone(tiny_bundle, tmp_path, capsys):
    bundle = tmp_path / "parent"
    shutil.copytree(tiny_bundle, bundle)
    doc = json.loads((bundle / "bundle.json").read_text())
    doc["provenance"]["dataset"]["path"] = str(tmp_path / "gone")
    (bundle / "bundle.json").write_text(json.dumps(doc))
    data = user_set(tmp_path / "mine", seed=11)
    out = tmp_path / "new"
    argv = ["convert", "--from-bundle", str(bundle), "--data", str(data), "--out", str(out), "--train-layers", "dense"]
    argv += ["--epochs", "2", "--variants", "float32", "--default-variant", "float32", "--allow-degenerate"]
    code, stdout, err = run(argv + ["--no-progress"], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["original_test"]["skipped"].startswith(str(tmp_path / "gone"))
    assert report["fine_tune"]["trained_layers"] == ["logits"]
    assert report["fine_tune"]["rehearsal"]["original_windows"] == 0
    assert report["fine_tune"]["rehearsal"]["skipped"] == report["original_test"]["skipped"]
    assert "skipped:" in stdout and "skipped:" in (out / "report.md").read_text()


# ---------------------------------------------------------------- the recorded layout (edge-har record's sessions)


def recorded_set(root: Path, rate: float = 64.0, channels=("x", "y", "z"), sessions: int = 3, seed: int = 5) -> Path:
    """``root/watch/<session>/``: each session walks, sits and waves 12 s each, at ``rate`` (the model's is 32 Hz),
    raw HMP codes with the HMP scaling in recording.json, labels.csv one segment per activity."""
    from edge_har.convert.synthetic import pattern_for, synthesize_recording
    from edge_har.core.formats.hmp import HMP_OFFSET, HMP_SCALE
    from edge_har.core.recording_layout import LabelSegment, RecordingMeta, write_session

    rng = np.random.default_rng(seed)
    for s in range(sessions):
        started = 1_780_000_000.0 + 3600 * s
        session = f"20260601T{10 + s:02d}0000Z"
        blocks, segments, t0 = [], [], started
        for name in ("walk", "sit", "wave"):
            n = int(12 * rate)
            blocks.append(synthesize_recording(pattern_for(name), n, rate, rng))
            segments.append(LabelSegment(name.capitalize(), t0, t0 + n / rate))
            t0 += n / rate
        samples = np.concatenate(blocks).astype(np.float64)
        t = started + np.arange(len(samples)) / rate
        meta = RecordingMeta(
            device_id="watch",
            session_id=session,
            started=started,
            channels=list(channels),
            sample_rate_hz=rate,
            units="g",
            scale=[float(HMP_SCALE[0])] * 3,
            offset=[float(HMP_OFFSET[0])] * 3,
            source="serial",
        )
        write_session(root / "watch" / session, meta, t, samples, segments)
    return root


def test_recorded_set_with_other_channels_is_refused(tiny_bundle, tmp_path, capsys):
    data = recorded_set(tmp_path / "rec", channels=("ax", "ay", "az"), sessions=1)
    code, _, err = run(
        ["convert", "--from-bundle", str(tiny_bundle), "--data", str(data), "--out", str(tmp_path / "n")], capsys
    )
    assert code == 2
    assert "['ax', 'ay', 'az']" in error_line(err) and "['x', 'y', 'z']" in error_line(err)


@pytest.mark.slow
def test_personalise_on_a_recorded_set_at_another_rate(tiny_bundle, tmp_path, capsys):
    from edge_har.core.bundle import Bundle

    data = recorded_set(tmp_path / "rec")
    out = tmp_path / "new"
    argv = ["convert", "--from-bundle", str(tiny_bundle), "--data", str(data), "--out", str(out), "--epochs", "5"]
    code, stdout, err = run(argv + ["--allow-int8-drop", "--allow-degenerate", "--no-progress"], capsys)
    assert code == 0, err
    bundle = Bundle.load(out)
    assert bundle.preprocessing.sample_rate_hz == 32.0
    section = bundle.data["training"]["personalisation"]
    assert section["user_data"]["format"] == "recorded"
    # 9 labelled stretches (3 sessions x 3 activities), whole ones held out: one per class
    assert section["user_data"]["recordings"] == {"train": 6, "val": 0, "test": 3}
    # 12 s at 64 Hz resampled to 32 Hz: 384 samples, windows of 64 every 16: 21 per stretch
    assert section["held_out"]["windows"] == 3 * 21
