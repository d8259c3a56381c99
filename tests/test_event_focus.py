"""--event-focus: a recording labelled as a whole by a fall keeps "fall" only around its impact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_har.core.formats import DatasetError, load_dataset

RATE = 50


def write_set(root: Path) -> Path:
    """Folder layout: fall/ (10 s, a spike at 6 s), adl/ (10 s, calm), 3 axes of m/s^2 with gravity on z."""
    rng = np.random.default_rng(0)
    for label, n in (("fall", 3), ("adl", 2)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            x = rng.normal(0, 0.2, (10 * RATE, 3))
            x[:, 2] += 9.81
            if label == "fall":
                peak = 6 * RATE + 10 * i  # 6.0, 6.2, 6.4 s
                x[peak] = [25.0, -20.0, 30.0]
            np.savetxt(root / label / f"s{i + 1}_{label}_{i}.txt", x, fmt="%.4f")
    return root


def load(root: Path, **options):
    return load_dataset(root, format="folder", sample_rate=RATE, channels=("acc_x", "acc_y", "acc_z"), **options)


def test_fall_recordings_keep_the_stretch_around_the_impact(tmp_path):
    root = write_set(tmp_path / "set")
    ds = load(root, event_focus="fall=2,3")
    falls = [r for r in ds.recordings if r.label == "fall"]
    assert len(falls) == 3 and ds.labels == ["adl", "fall"]
    for i, r in enumerate(sorted(falls, key=lambda r: r.source)):
        assert len(r) == 2 * RATE + 3 * RATE + 1  # 2 s before, the peak, 3 s after
        assert np.abs(r.samples).max() == pytest.approx(30.0)  # the impact is inside
        assert r.source.endswith(f"@{6 * RATE + 10 * i - 2 * RATE}-{6 * RATE + 10 * i + 3 * RATE + 1}")
    assert len([r for r in ds.recordings if r.label == "adl"]) == 2  # the rest is left out by default
    assert len(set(ds.group_keys())) == 5


def test_the_rest_becomes_another_class_in_the_same_split_group(tmp_path):
    ds = load(write_set(tmp_path / "set"), event_focus="fall=1,1", event_rest="adl")
    assert sorted(r.label for r in ds.recordings).count("adl") == 2 + 3 * 2  # before and after of each fall
    groups = {}
    for r, g in zip(ds.recordings, ds.group_keys()):
        groups.setdefault(g, []).append(r)
    assert len(groups) == 5  # the pieces of one fall recording stay one group
    assert all(sum(len(r) for r in pieces) == 10 * RATE for pieces in groups.values())
    new = load(write_set(tmp_path / "set2"), event_focus="fall=1,1", event_rest="lying")
    assert new.labels == ["adl", "fall", "lying"]


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"event_focus": "fall"}, "--event-focus 'fall': expected CLASS=BEFORE,AFTER"),
        ({"event_focus": "fall=2"}, "expected CLASS=BEFORE,AFTER"),
        ({"event_focus": "fall=-1,2"}, "expected CLASS=BEFORE,AFTER"),
        ({"event_focus": "fall=0,0"}, "expected CLASS=BEFORE,AFTER"),
        ({"event_focus": "stumble=2,2"}, "--event-focus stumble: not a class of this data set (adl, fall)"),
        ({"event_focus": "fall=2,2", "event_rest": "fall"}, "--event-rest 'fall'"),
        ({"event_rest": "adl"}, "--event-rest 'adl' goes with --event-focus"),
    ],
)
def test_bad_focus_options_are_one_line_errors(tmp_path, options, fragment):
    with pytest.raises(DatasetError) as err:
        load(write_set(tmp_path / "set"), **options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow  # a real convert and evaluate (about 15 s)
def test_convert_chooses_the_event_rule_on_whole_validation_recordings_and_the_daemon_reads_it(tmp_path, capsys):
    pytest.importorskip("tf_keras")
    import json

    from edge_har.cli import main
    from edge_har.core.bundle import Bundle
    from edge_har.device.event_stage import event_rules

    root = write_set(tmp_path / "set")
    for i in range(3, 12):  # more recordings, so every split side has each class
        x = np.random.default_rng(i).normal(0, 0.2, (10 * RATE, 3))
        x[:, 2] += 9.81
        np.savetxt(root / "adl" / f"s{i}_adl_{i}.txt", x, fmt="%.4f")
        x[6 * RATE] = [25.0, -20.0, 30.0]
        x[6 * RATE + 1 :, 2] -= 9.81  # lying after the fall: gravity moves to another axis
        x[6 * RATE + 1 :, 0] += 9.81
        np.savetxt(root / "fall" / f"s{i}_fall_{i}.txt", x, fmt="%.4f")
    out = tmp_path / "bundle"
    flags = ["--format", "folder", "--sample-rate", "50", "--channels", "acc_x,acc_y,acc_z", "--skip-short"]
    flags += ["--event-focus", "fall=2,2", "--event-rest", "adl", "--window", "2s", "--stride", "0.5s"]
    flags += ["--event-class", "fall", "--target-false-alarms", "5", "--refractory", "10"]
    small = ["--conv-filters", "8", "--kernel-size", "3", "--lstm-units", "8", "--epochs", "4", "--seed", "1"]
    small += ["--variants", "float32", "--default-variant", "float32", "--no-progress"]
    assert main(["convert", "--data", str(root), *flags, *small, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "events: fall at p >=" in printed and "chosen on the validation split" in printed
    doc = json.loads((out / "bundle.json").read_text())
    assert '"event_focus": "fall=2,2"' in json.dumps(doc["provenance"])  # the data flag, replayed by evaluate
    entry = doc["events"]["fall"]
    assert entry["refractory_s"] == 10.0 and entry["chosen_on"]["split"] == "val" and entry["curve"]
    val_whole = {s.split("@")[0] for s in doc["metrics"]["split"]["val_sources_relative"]}
    assert entry["chosen_on"]["recordings"] == len(val_whole)  # whole trials, not the focused pieces
    assert (out / "evaluation" / "events_fall_val.png").is_file()
    bundle = Bundle.load(out)
    (rule,) = event_rules(None, bundle.data.get("events"), bundle.labels)
    assert (rule.label, rule.threshold, rule.k) == ("fall", entry["threshold"], entry["k"])
    # evaluate on whole test trials with the rule swept again, as the README says
    assert (
        main(
            [
                "evaluate",
                str(out),
                "--event-focus",
                "-",
                "--positive-class",
                "fall",
                "--no-progress",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    assert "events ('fall'" in capsys.readouterr().out


def test_a_trial_split_by_a_pause_keeps_its_impact_in_the_piece_that_holds_it():
    from edge_har.core.formats.base import Dataset
    from edge_har.core.formats.event_focus import focus_events
    from edge_har.core.recordings import Recording

    def calm(n: int) -> np.ndarray:
        x = np.zeros((n, 3), np.float32)
        x[:, 2] = 9.81
        return x

    before, after = calm(300), calm(300)
    after[100] = [25.0, -20.0, 30.0]  # the impact is in the second piece of the trial
    before[50] = [5.0, 0.0, 12.0]  # a bump in the first piece: not the impact
    pieces = [
        Recording(before, "fall", "t1 (piece 1 of 2)", "s1", RATE),
        Recording(after, "fall", "t1 (piece 2 of 2)", "s1", RATE),
        Recording(calm(300), "adl", "t2", "s1", RATE),
    ]
    ds = Dataset(
        "x", Path("x"), pieces, ["adl", "fall"], ("acc_x", "acc_y", "acc_z"), RATE, split_groups=["t1", "t1", "t2"]
    )
    focus_events(ds, "fall=1,1", "adl", "x")
    falls = [r for r in ds.recordings if r.label == "fall"]
    assert [r.source for r in falls] == ["t1 (piece 2 of 2)@50-151"]
    assert "t1 (piece 1 of 2)" in [r.source for r in ds.recordings if r.label == "adl"]  # all of it daily life
    assert ds.split_groups is not None and set(ds.split_groups) == {"t1", "t2"}
