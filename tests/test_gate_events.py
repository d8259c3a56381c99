"""The evaluation pieces of convert and evaluate: the gate's verdict, the degenerate-model check, a refused conversion kept and
re-quantized with ``convert --from-keras``, data flags taken from the bundle, event-class metrics, quiet logs.

The fast tests drive the real skeleton with a fake conversion path (no TensorFlow) and the real metric code
on hand-made predictions whose figures are worked out in the comments; the slow one is a real tiny conversion
through ``edge-har convert``, refused, re-quantized from its kept Keras model, then evaluated with no data
flags at all.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.cli import gate_line, register_evaluate
from edge_har.convert.evaluate import (
    EvaluationError,
    VariantEvaluation,
    event_report,
    fill_data_flags,
    format_event_report,
    given_data_flags,
    recording_detection,
)
from edge_har.convert.quiet import collapse_repeats
from edge_har.convert.skeleton import (
    DegenerateModelError,
    degenerate_check,
    degenerate_variants,
    run_skeleton,
)
from edge_har.core.bundle import Bundle
from tests.test_skeleton import FakeOptions, FakePath  # the skeleton's own fake conversion path

LABELS = ["a", "b"]


def evaluation(name: str, cm: list[list[int]]) -> VariantEvaluation:
    total = sum(map(sum, cm))
    acc = sum(cm[i][i] for i in range(len(cm))) / total
    report = {"accuracy": acc, "macro_f1": acc, "macro_precision": acc, "macro_recall": acc, "n_windows": total}
    report["confusion_matrix"] = cm
    return VariantEvaluation(name, report, np.zeros((total, len(cm)), np.float32), 0.01, "fake 1.0")


# ---------------------------------------------------------------- degenerate models


def test_a_model_answering_one_class_for_everything_is_degenerate():
    # 50 a + 50 b, 98 of 100 predicted a: 98% predicted share against a true share of 50%
    evaluations = {"float32": evaluation("float32", [[50, 0], [48, 2]])}
    assert degenerate_variants(evaluations, LABELS) == {
        "float32": {"class": "a", "predicted_share": 0.98, "true_share": 0.5}
    }
    with pytest.raises(DegenerateModelError, match=r"float32 predicts 'a' for 98.0% of the test windows \(50.0% are"):
        degenerate_check(evaluations, LABELS, allow=False)


def test_a_test_split_that_really_is_one_class_is_not_degenerate():
    # 97 of 100 windows are a and the model says a for 98: right, not collapsed (margin 1 point < 10)
    assert degenerate_variants({"int8": evaluation("int8", [[96, 1], [2, 1]])}, LABELS) == {}
    # one class only in the test split: nothing to tell
    assert degenerate_variants({"int8": evaluation("int8", [[10, 0], [0, 0]])}, LABELS) == {}


class DegeneratePath(FakePath):
    def evaluate(self, bundle, variant):
        self._call("evaluate")
        return evaluation(variant, [[2, 0], [2, 0]])  # everything "a"; accuracy 50% in every variant


def test_a_degenerate_conversion_is_refused_and_kept(tmp_path):
    with pytest.raises(DegenerateModelError, match="degenerate.*--allow-degenerate.*kept in"):
        run_skeleton(DegeneratePath({}), FakeOptions(out=tmp_path / "bundle"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.refused"]
    gate = json.loads((tmp_path / "bundle.refused" / "refused.json").read_text())["metrics"]["gate"]
    assert gate["verdict"] == "refused" and gate["reasons"] == ["degenerate model"]
    assert set(gate["degenerate"]) == {"float32", "int8"}


def test_allow_degenerate_writes_it_with_the_verdict_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_har.convert.export.git_revision", lambda: None)
    options = FakeOptions(out=tmp_path / "bundle")
    options.allow_degenerate = True  # ConvertOptions' field; the skeleton reads it where present
    out = run_skeleton(DegeneratePath({}), options)
    gate = Bundle.load(out).gate
    assert gate["verdict"] == "accepted" and gate["reasons"] == ["degenerate model"]
    assert gate_line(Bundle.load(out).metrics).startswith("int8 gate: ACCEPTED as asked (degenerate model)")


# ---------------------------------------------------------------- the gate's verdict


def test_a_passing_bundle_records_the_verdict_in_words(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_har.convert.export.git_revision", lambda: None)
    out = run_skeleton(FakePath({"float32": 1.0, "int8": 0.995}), FakeOptions(out=tmp_path / "bundle"))
    bundle = Bundle.load(out)
    gate = bundle.gate
    assert gate["verdict"] == "pass" and gate["drop_points"] == 0.5 and gate["allowed_drop_points"] == 1.0
    assert bundle.metrics["int8_drop_allowed"] is False  # the old key stays for older readers
    assert gate_line(bundle.metrics) == "int8 gate: PASS; int8 0.50 points below float32 (allowed: 1 below)"


def test_an_older_bundle_without_a_gate_object_reads_the_same():
    old = {"int8_drop_points": 2.5, "max_int8_drop_points": 1.0, "int8_drop_allowed": True}
    assert gate_line(old) == (
        "int8 gate: ACCEPTED as asked (int8 drop over the limit); int8 2.50 points below float32 (allowed: 1 below)"
    )


def test_a_malformed_gate_verdict_is_a_bundle_error(tmp_path, monkeypatch):
    from edge_har.core.bundle import BundleError

    monkeypatch.setattr("edge_har.convert.export.git_revision", lambda: None)
    out = run_skeleton(FakePath({"float32": 1.0, "int8": 1.0}), FakeOptions(out=tmp_path / "bundle"))
    doc = json.loads((out / "bundle.json").read_text())
    doc["metrics"]["gate"]["verdict"] = "maybe"
    (out / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="metrics.gate.verdict"):
        Bundle.load(out)


# ---------------------------------------------------------------- event-like classes


def test_event_report_by_hand():
    labels = ["fall", "walk", "sit"]
    # three recordings: 0 = a fall (4 windows), 1 = walk (3), 2 = sit (3)
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    p_fall = np.array([0.9, 0.8, 0.3, 0.1, 0.6, 0.2, 0.1, 0.1, 0.1, 0.1])
    probs = np.stack([p_fall, (1 - p_fall) / 2, (1 - p_fall) / 2], axis=1)
    probs[7:, 2] += 0.05  # sit windows lean to sit
    probs[7:, 1] -= 0.05
    rep = event_report(y, probs, groups, labels, "fall", k=2, thresholds=(0.5, 0.95))
    # argmax calls fall on windows 0, 1, 4 (0.6 > 0.2 each): fall sensitivity 2/4, specificity 5/6
    win = rep["argmax"]["windows"]
    assert (win["tp"], win["fn"], win["tn"], win["fp"]) == (2, 2, 5, 1)
    assert win["sensitivity"] == 0.5 and win["specificity"] == pytest.approx(5 / 6)
    # recordings with >= 2 fall windows: the fall recording (2), not walk (1): 1/1 detected, no false alarm
    rec = rep["argmax"]["recordings"]
    assert (rec["tp"], rec["fn"], rec["tn"], rec["fp"]) == (1, 0, 2, 0)
    # at threshold 0.95 nothing is called fall: sensitivity 0, specificity 1, precision undefined
    top = rep["threshold_sweep"][1]
    assert top["threshold"] == 0.95 and top["windows"]["sensitivity"] == 0.0
    assert top["windows"]["specificity"] == 1.0 and top["windows"]["precision"] is None
    assert top["recordings"]["sensitivity"] == 0.0
    # walk against the rest: argmax says walk for 5, 6 (window 4 went to fall), and for the fall windows 2, 3
    # (walk and sit tie there; argmax takes the first): sensitivity 2/3, specificity 5/7
    assert rep["per_class"]["walk"]["sensitivity"] == pytest.approx(2 / 3)
    assert rep["per_class"]["walk"]["specificity"] == pytest.approx(5 / 7)
    text = format_event_report(rep)
    assert "<- positive" in text and "threshold sweep on p(fall)" in text


def test_recording_detection_counts_false_alarms():
    y = np.array([1, 1, 0, 0, 0, 0])
    groups = np.array([0, 0, 1, 1, 2, 2])
    called = np.array([False, False, True, False, True, True])
    rec = recording_detection(y, called, groups, positive=0, k=1)
    assert (rec["tp"], rec["fn"], rec["fp"], rec["tn"]) == (2, 0, 0, 1)  # class 0 recordings 1 and 2 both caught
    rec = recording_detection(y, called, groups, positive=1, k=1)
    assert (rec["tp"], rec["fn"], rec["fp"], rec["tn"]) == (0, 1, 2, 0)  # missed, and two false alarms


def test_event_report_rejects_an_unknown_class():
    with pytest.raises(EvaluationError, match="--positive-class 'fal': not a class of the model"):
        event_report(np.zeros(2, int), np.ones((2, 1)), np.zeros(2, int), ["fall"], "fal")


# ---------------------------------------------------------------- data flags from the bundle


def evaluate_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_evaluate(parser.add_subparsers())
    return parser.parse_args(["evaluate", *argv])


def test_data_flags_come_from_the_bundle_unless_given(tmp_path):
    recorded = {"format": "folder", "sample_rate": 50.0, "channels": ["ax", "ay", "az"], "scale": [0.5]}
    doc = {"provenance": {"dataset": {"path": str(tmp_path), "data_flags": recorded}}}
    args = evaluate_args(["b", "--sample-rate", "25"])
    taken = fill_data_flags(args, doc)
    assert args.data == tmp_path and args.format == "folder" and args.channels == ("ax", "ay", "az")
    assert args.sample_rate == 25.0  # given: wins
    assert args.scale == (0.5,)
    assert not any(t.startswith("--sample-rate") for t in taken)
    assert given_data_flags(args) == {
        "format": "folder",
        "sample_rate": 25.0,
        "channels": ["ax", "ay", "az"],
        "scale": [0.5],
    }


def test_an_older_bundle_gives_what_its_provenance_describes(tmp_path):
    described = {"path": str(tmp_path), "format": "folder", "sample_rate_hz": 32.0, "channels": ["x", "y", "z"]}
    described.update(scale=[0.1], offset=[-1.5])
    args = evaluate_args(["b"])
    fill_data_flags(args, {"provenance": {"dataset": described}})
    assert (args.sample_rate, args.channels, args.scale, args.offset) == (32.0, ("x", "y", "z"), (0.1,), (-1.5,))
    hmp = evaluate_args(["b"])  # HMP's preset fixes rate and channels: none are passed to its loader
    fill_data_flags(hmp, {"provenance": {"dataset": dict(described, format="hmp")}})
    assert hmp.format == "hmp" and hmp.sample_rate is None and hmp.channels is None


# ---------------------------------------------------------------- repeated log lines


def test_a_repeated_line_is_logged_once_with_its_count(caplog):
    logger = logging.getLogger("edge_har.device.runtime")
    with caplog.at_level(logging.INFO), collapse_repeats("edge_har", level="INFO"):
        for _ in range(5):
            logger.info("resampling the source's %g Hz to the model's %g Hz", 200, 50)
        logger.info("another line")
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_har.device.runtime"]
    assert lines == [
        "resampling the source's 200 Hz to the model's 50 Hz",
        "another line",
        "resampling the source's 200 Hz to the model's 50 Hz (repeated 4 more times)",
    ]


# ---------------------------------------------------------------- a real conversion, refused and re-quantized


@pytest.mark.slow
def test_refused_then_from_keras_then_evaluate_with_the_bundles_flags(tmp_path, capsys):
    from edge_har.cli import main
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    data = write_synthetic_imu_dataset(
        tmp_path / "data", classes=("walk", "sit", "wave"), recordings_per_class=6, subjects=3, seconds=(8.0, 12.0)
    )
    out = tmp_path / "bundle"
    small = ["--window", "64", "--stride", "16", "--conv-filters", "8", "--kernel-size", "3", "--lstm-units", "8"]
    small += ["--epochs", "8", "--batch-size", "32", "--patience", "3", "--learning-rate", "0.005", "--seed", "3"]
    flags = ["--format", "folder", "--sample-rate", "32", "--channels", "x,y,z", "--scale", "0.047619"]
    flags += ["--offset", "-1.5"]
    # a limit no model can meet (int8 must beat float32 by 100 points): refused, exit 3, the model kept
    code = main(
        ["convert", "--data", str(data), *flags, *small, "--calibration-size", "60"]
        + ["--max-int8-drop", "-100", "--out", str(out), "--no-progress"]
    )
    assert code == 3
    kept = tmp_path / "bundle.refused"
    assert not out.exists() and (kept / "keras_model.h5").is_file() and (kept / "refused.json").is_file()
    err = capsys.readouterr().err
    assert f"--from-keras {kept}" in err

    # re-quantized at the default limit, no data flags given: they come from refused.json
    assert main(["convert", "--from-keras", str(kept), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "int8 gate: PASS" in printed and f"written to {out.absolute()}" in printed
    bundle = Bundle.load(out)
    assert bundle.gate["verdict"] == "pass"
    assert bundle.data["training"]["requantized_from"] == str((kept / "keras_model.h5").absolute())
    assert bundle.data["provenance"]["dataset"]["data_flags"]["sample_rate"] == 32.0
    refused_doc = json.loads((kept / "refused.json").read_text())
    assert bundle.data["training"]["epochs_run"] == refused_doc["training"]["epochs_run"]  # not retrained
    assert bundle.metrics["split"]["test_sources_relative"] == refused_doc["metrics"]["split"]["test_sources_relative"]

    # evaluate without --data or any data flag, with the event report for one class
    report_dir = tmp_path / "eval"
    argv = ["evaluate", str(out), "--variant", "int8", "--positive-class", "Wave", "--detect-k", "2"]
    assert main(argv + ["--out", str(report_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "event class 'Wave'" in printed and "threshold sweep on p(Wave)" in printed
    events = json.loads((report_dir / "int8" / "events.json").read_text())
    assert events["k"] == 2 and events["recordings"] == len(bundle.metrics["split"]["test_sources_relative"])
    # the device's own rule over each test recording: the chosen rule, its figures and the curve's plot
    assert "events ('Wave', best on this data for <= 1 false alarm(s)/h)" in printed
    per_hour = events["per_hour"]
    wave_recordings = sum("wave" in name for name in bundle.metrics["split"]["test_sources_relative"])
    assert per_hour["event_recordings"] == wave_recordings and per_hour["other_hours"] > 0
    assert len(per_hour["curve"]) == 4 * 22 and per_hour["chosen"]["rule"]["refractory_s"] == 30.0
    assert (report_dir / "int8" / "events_sweep.png").stat().st_size > 10_000
    metrics = json.loads((report_dir / "int8" / "metrics.json").read_text())
    assert metrics["accuracy"] == bundle.variants["int8"].metrics["accuracy"]  # same test split, same numbers


def test_bench_accuracy_reads_the_bundles_data_and_reports_an_event_class(tiny_bundle, tmp_path, capsys):
    from edge_har.cli import main

    out = tmp_path / "bench"
    argv = ["bench", "accuracy", str(tiny_bundle), "--quick", "--no-baseline", "--no-streaming", "--no-progress"]
    assert main(argv + ["--positive-class", "Walk", "--detect-k", "1", "--out", str(out)]) == 0  # no --data
    printed = capsys.readouterr().out
    assert "Event class, int8:" in printed and "threshold sweep on p(Walk)" in printed
    section = json.loads((out / "results.json").read_text())["suites"]["accuracy"]
    int8 = next(r for r in section["rows"] if r["name"] == "int8")
    recordings = int8["events"]["argmax"]["recordings"]
    assert recordings["recordings"] == section["data"]["test_recordings"]
    walk = int8["per_class"]["Walk"]
    assert int8["events"]["per_class"]["Walk"]["sensitivity"] == pytest.approx(walk["recall"])  # one definition
    chosen = int8["events"]["per_hour"]["chosen"]
    assert chosen["event"] == "Walk" and 0 <= chosen["sensitivity"] <= 1
    assert Path(int8["files"]["events_sweep"]).is_file()


def test_event_streams_put_the_impact_at_the_acceleration_peak_and_time_windows_by_stride():
    from edge_har.convert.event_eval import event_streams, per_hour_report
    from edge_har.core.preprocessing import Preprocessing

    pre = Preprocessing(sample_rate_hz=10.0, window=10, stride=5, channels=("acc_x", "acc_y", "acc_z"))
    # recording 0: a fall, 4 windows; the peak is sample 3 of window 2 (t = 2*0.5 + 0.3 = 1.3 s)
    # recording 1: daily life, 3 windows, flat
    x = np.ones((7, 10, 3), np.float32)
    x[2, 3] = [0.0, 30.0, 40.0]
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    groups = np.array([0, 0, 0, 0, 1, 1, 1])
    probs = np.zeros((7, 2))
    probs[:, 0] = 1.0
    probs[[2, 3], 1], probs[[2, 3], 0] = 0.9, 0.1  # windows 2 and 3 of the fall say "fall"
    streams = event_streams(x, probs, y, groups, pre, ["adl", "fall"], "fall", ["f.txt", "a.txt"])
    fall, adl = streams
    assert fall.event == "fall" and fall.impact_ts == pytest.approx(1.3) and adl.event is None
    assert list(fall.ts) == pytest.approx([0.9, 1.4, 1.9, 2.4])  # a window ends at its last sample
    assert adl.seconds() == pytest.approx(2.0)  # 3 windows of 1 s, 0.5 s apart: samples 0-19
    report = per_hour_report(streams, "fall", ["adl", "fall"], target_per_hour=1.0, ks=(1, 2))
    chosen = report["chosen"]
    # the strictest rule that still catches the fall: both windows at p = 0.9
    assert chosen["detected"] == 1 and chosen["false_alarms"] == 0
    assert (chosen["rule"]["threshold"], chosen["rule"]["k"]) == (0.9, 2)
    assert chosen["delay_s"]["median"] == pytest.approx(1.1)  # detected at 2.4 s, the impact at 1.3 s


# ---------------------------------------------------------------- the HAPT preset and its benchmark tables


def test_the_uci_har_preset_fills_only_the_flags_left_at_their_defaults():
    from edge_har.convert.cli import UCI_HAR_BASIC, apply_preset

    args = argparse.Namespace(preset="uci-har", window="3s", stride="0.5s", train_stride=None, classes=None)
    taken = apply_preset(args)
    assert taken == [
        "--window 128",
        "--stride 64",
        "--train-stride 16",
        "--classes " + ",".join(UCI_HAR_BASIC),
        "--family tinyhar",
    ]
    assert (args.window, args.stride, args.train_stride, args.classes) == ("128", "64", "16", UCI_HAR_BASIC)
    assert args.family == "tinyhar"
    mine = argparse.Namespace(preset="hapt-12", window="256", stride="0.5s", train_stride="8", classes=("SITTING",))
    apply_preset(mine)
    assert (mine.window, mine.stride, mine.train_stride, mine.classes) == ("256", "64", "8", ("SITTING",))
    # a family given keeps; hapt-12 (not measured per family) keeps the default one
    chosen = argparse.Namespace(preset="uci-har", family="deepconvlstm")
    apply_preset(chosen)
    assert chosen.family == "deepconvlstm" and getattr(mine, "family", "cnn-lstm") == "cnn-lstm"


def test_train_stride_cuts_more_training_windows_and_leaves_the_others(tmp_path):
    from edge_har.convert.datasets import load_dataset
    from edge_har.convert.pipeline import ConvertOptions, build_preprocessing, split_windows
    from edge_har.convert.splits import split_recordings
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    data = write_synthetic_imu_dataset(tmp_path / "d", recordings_per_class=4, subjects=2, seconds=10.0)
    dataset = load_dataset(data)
    split = split_recordings(dataset, seed=1)
    pre = build_preprocessing(dataset, ConvertOptions(out=tmp_path / "b", window=64, stride=32))
    plain = split_windows(dataset, split, pre, False)
    dense = split_windows(dataset, split, pre, False, train_stride=8)
    # 10 s at 32 Hz = 320 samples: (320 - 64) // 32 + 1 = 9 windows per recording at stride 32, 33 at 8
    assert len(plain["train"].x) == 9 * len(split.train) and len(dense["train"].x) == 33 * len(split.train)
    assert len(dense["test"].x) == len(plain["test"].x) and len(dense["val"].x) == len(plain["val"].x)


def test_the_hapt_tables():
    from research.hapt import format_tables

    per_class = {"WALKING": 0.95, "SITTING": 0.8}
    row = {
        "config": "basic6",
        "what": "6 basic activities",
        "status": "ok",
        "labels": ["WALKING", "SITTING"],
        "gate": {"verdict": "pass"},
        "training_seconds": 61.0,
        "epochs_run": 20,
        "best_epoch": 10,
        "latency_p50_ms": {"int8": 0.0312},
        "confusion_png": "basic6-int8-confusion.png",
        "accuracy": {
            "float32": {
                "accuracy": 0.92,
                "macro_f1": 0.91,
                "drop_points": 0.0,
                "size_bytes": 1024000,
                "per_class_f1": per_class,
            },
            "int8": {
                "accuracy": 0.9195,
                "macro_f1": 0.91,
                "drop_points": 0.05,
                "size_bytes": 280000,
                "per_class_f1": per_class,
            },
        },
    }
    refused = {"config": "basic3", "what": "acc alone", "status": "refused", "error": "int8 2 points below"}
    text = format_tables([row, refused])
    assert "| basic6: 6 basic activities | 92.00% | 91.95% | 91.00% | -0.05 | pass | - | 273.4 KB | 0.031 ms |" in text
    assert "| basic3: acc alone | refused: int8 2 points below |" in text
    assert "| SITTING | 0.800 | 0.800 |" in text and "`basic6-int8-confusion.png`" in text
