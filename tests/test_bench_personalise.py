"""``edge-har bench personalise`` end to end on a tiny HAPT-like layout, and the time split behind its figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_har.benchmarks.personalise import (
    class_quotas,
    recording_order,
    select_budget,
    split_subject,
)

HAPT_NAMES = (
    "WALKING",
    "WALKING_UPSTAIRS",
    "WALKING_DOWNSTAIRS",
    "SITTING",
    "STANDING",
    "LAYING",
    "STAND_TO_SIT",
    "SIT_TO_STAND",
    "SIT_TO_LIE",
    "LIE_TO_SIT",
    "STAND_TO_LIE",
    "LIE_TO_STAND",
)
SEGMENT = 400  # samples (8 s at 50 Hz)
GAP = 50
TRAIN_USERS = (1, 3, 5)
TEST_USERS = (2, 4)  # on UCI HAR's test side


def write_hapt_like(root: Path, seed: int = 0) -> Path:
    """HAPT's layout (RawData/labels.txt, acc_/gyro_expXX_userYY.txt, activity_labels.txt), synthetic signals.

    Each user does the six basic activities three times over (8 s segments with unlabelled gaps) and
    one unlabelled-for-this-benchmark transition; the class sets the signal's level and rhythm, the
    user adds an offset of their own, so an unseen user is a little off the base model.
    """
    rng = np.random.default_rng(seed)
    base = root / "HAPT Data Set"
    raw = base / "RawData"
    raw.mkdir(parents=True)
    (base / "activity_labels.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(HAPT_NAMES)))
    labels = []
    for user in sorted(TRAIN_USERS + TEST_USERS):
        offset = rng.normal(0, 0.15, 6)
        rows, position = [], 0
        segments = [(rep, act) for rep in range(3) for act in range(1, 7)] + [(3, 7)]
        for _, act in segments:
            t = np.arange(SEGMENT + GAP) / 50.0
            level = np.array([np.cos(act), np.sin(act), 0.3 * act - 1, 0.1 * act, -0.1 * act, 0.05 * act])
            wave = (0.6 if act <= 3 else 0.05) * np.sin(2 * np.pi * (0.8 + 0.4 * act) * t)[:, None]
            rows.append(level + offset + wave + rng.normal(0, 0.1, (len(t), 6)))
            labels.append(f"{user} {user} {act} {position + 1} {position + SEGMENT}")
            position += SEGMENT + GAP
        samples = np.concatenate(rows)
        for name, cols in (("acc", slice(0, 3)), ("gyro", slice(3, 6))):
            np.savetxt(raw / f"{name}_exp{user:02d}_user{user:02d}.txt", samples[:, cols], fmt="%.6f")
    (raw / "labels.txt").write_text("\n".join(labels) + "\n")
    return root


@pytest.fixture(scope="module")
def hapt_like(tmp_path_factory) -> Path:
    return write_hapt_like(tmp_path_factory.mktemp("hapt_like") / "hapt")


TINY_MODEL: dict[str, Any] = dict(conv_filters=(8,), kernel_size=3, lstm_units=(8,), conv_dropout=0.0, dropout=0.1)


@pytest.fixture(scope="module")
def tiny_base(hapt_like, tmp_path_factory) -> Path:
    """A tiny base model trained by the suite's own base training (convert's pipeline) on the training users."""
    from edge_har.benchmarks.personalise import PersonaliseSettings, train_base
    from edge_har.convert.models import ModelConfig
    from edge_har.core.formats.hapt import HAPT_BASIC

    settings_ = PersonaliseSettings(
        data=hapt_like,
        dataset_options={"classes": HAPT_BASIC},
        base_epochs=3,
        base_patience=2,
        base_model=ModelConfig(**TINY_MODEL),
        base_variants=("float32", "int8"),
        window=64,
        stride=32,
        progress=False,
    )
    return train_base(settings_, tmp_path_factory.mktemp("personalise") / "base")


@pytest.fixture(scope="module")
def swept(hapt_like, tiny_base, tmp_path_factory):
    """``edge-har bench personalise`` on the tiny layout: two unseen users, two budgets, the int8 check."""
    from edge_har.cli import main

    out = tmp_path_factory.mktemp("personalise-out")
    args = ["bench", "personalise", "--data", str(hapt_like), "--base", str(tiny_base), "--out", str(out)]
    args += ["--minutes", "0.5,5", "--epochs", "2", "--int8-minutes", "0.5", "--rehearse", "0.5", "--no-progress"]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())["suites"]["personalise"], out


@pytest.mark.slow  # trains a base model and fine-tunes it per subject (about 30 s)
def test_sweep_figures_per_subject_and_budget(swept, tiny_base):
    section, out = swept
    assert section["complete"] is True
    assert section["data"]["subjects"] == ["s2", "s4"]  # the test side of UCI HAR's split, never trained on
    assert section["base"]["trained_here_s"] is None  # --base held a bundle: reused
    assert section["base"]["path"] == str(tiny_base.resolve())
    for s in section["subjects"]:
        assert s["windows"]["pool"] > 0 and s["windows"]["eval"] > 0 and s["windows"]["gap"] == 0
        assert 0 <= s["before"]["accuracy"] <= 1
        rows = {b["minutes"]: b for b in s["budgets"]}
        assert rows[0.5]["minutes_used"] == pytest.approx(0.5) and not rows[0.5]["capped"]
        # 5 minutes is more than the pool (2 of 3 segments of 6 activities: 1.6 min): capped, all of it
        assert rows[5.0]["capped"] and rows[5.0]["minutes_used"] == pytest.approx(s["pool_minutes"])
        assert rows[5.0]["windows"] == s["windows"]["pool"] > rows[0.5]["windows"]
        for b in rows.values():
            assert b["status"] == "ok"
            assert b["rehearsal_windows"] == round(0.5 * b["windows"])  # the base model's training windows mixed in
            assert all(n > 0 for n in b["windows_per_class"].values())  # every activity has its share
            assert b["forgetting_points"] == pytest.approx(
                100 * (s["others_before"]["accuracy"] - b["others_after"]["accuracy"])
            )
    summary = {r["minutes"]: r for r in section["summary"]}
    assert summary[0.5]["subjects"] == 2
    gains = [b["gain_points"] for s in section["subjects"] for b in s["budgets"] if b["minutes"] == 0.5]
    assert summary[0.5]["gain_points"]["mean"] == pytest.approx(np.mean(gains))
    q = section["int8"]
    assert q["subject"] == "s2" and q["minutes"] == 0.5
    assert {r["figure"] for r in q["rows"]} == {"before", "after", "others_before", "others_after"}
    assert all(0 <= r["int8_accuracy"] <= 1 for r in q["rows"])
    assert (out / "personalise.png").stat().st_size > 5000
    text = (out / "personalise.md").read_text()
    assert "Personalisation" in text and "int8 through the device interpreter" in text and "PARTIAL" not in text


def test_checkpoint_after_each_subject_keeps_a_partial_sweep(tmp_path):
    from edge_har.benchmarks.personalise import markdown, summarise, write_outputs

    section = json.loads(json.dumps(_partial_section()))
    write_outputs(section, tmp_path, tmp_path / "results.json")
    saved = json.loads((tmp_path / "results.json").read_text())["suites"]["personalise"]
    assert [s["subject"] for s in saved["subjects"]] == ["s2"]
    assert "PARTIAL: 1 of 2 subjects" in (tmp_path / "personalise.md").read_text()
    assert summarise(section)[0]["after_accuracy"]["mean"] == pytest.approx(0.9)
    assert "| s2" in markdown(section)


def _partial_section() -> dict:
    score = {"accuracy": 0.8, "macro_f1": 0.7, "windows": 10}
    after = {"accuracy": 0.9, "macro_f1": 0.9, "windows": 10}
    budget = {
        "minutes": 1.0,
        "minutes_used": 1.0,
        "capped": False,
        "windows": 20,
        "status": "ok",
        "after": after,
        "others_after": score,
        "gain_points": 10.0,
        "forgetting_points": 0.0,
    }
    section: dict[str, Any] = {
        "suite": "personalise",
        "complete": False,
        "command": "pytest",
        "data": {"name": "hapt", "subjects": ["s2", "s4"], "labels": ["A"], "window": 64, "stride": 32},
        "settings": {"minutes": [1.0], "train_layers": "head", "epochs": 2, "seed": 0},
        "base": {"model_id": "m", "test_accuracy_float": score, "training": {}},
        "subjects": [
            {
                "subject": "s2",
                "pool_minutes": 2.0,
                "eval_minutes": 1.0,
                "before": score,
                "others_before": score,
                "budgets": [budget],
            }
        ],
    }
    section["data"]["sample_rate_hz"] = 50.0
    from edge_har.benchmarks.personalise import summarise

    section["summary"] = summarise(section)
    return section


@pytest.mark.slow  # trains a base model and fine-tunes it per subject (about 30 s)
def test_command_refuses_a_subject_the_base_model_trained_on(hapt_like, tiny_base, tmp_path, capsys):
    from edge_har.cli import main

    args = ["bench", "personalise", "--data", str(hapt_like), "--base", str(tiny_base)]
    args += ["--subjects", "s1,s2", "--out", str(tmp_path), "--no-progress"]
    assert main(args) != 0
    assert "s1 were in the base model's training data" in capsys.readouterr().err


# ---------------------------------------------------------------- the split and the budgets


def _subject(n_segments: dict[int, int], length: int = 300, window: int = 50, stride: int = 25):
    ys: list[int] = []
    gs: list[int] = []
    sources: dict[int, str] = {}
    lengths: dict[int, int] = {}
    g = 0
    for c, n in n_segments.items():
        for k in range(n):
            # sources out of time order on purpose: the row numbers decide
            sources[g] = f"acc_exp01_user02.txt:rows {1 + 1000 * (n - k)}-{1000 * (n - k) + length}"
            lengths[g] = length
            count = (length - window) // stride + 1
            ys += [c] * count
            gs += [g] * count
            g += 1
    x = np.repeat(np.asarray(gs, np.float32)[:, None, None], window, axis=1)  # each window carries its segment
    return split_subject("s", x, np.asarray(ys), np.asarray(gs), sources, lengths, window, stride, 50.0, 2 / 3)


def test_split_takes_the_earlier_segments_for_the_pool_and_never_shares_one():
    sw = _subject({0: 3, 1: 4})
    for c, n_pool in ((0, 2), (1, 3)):
        pool = sw.part[sw.y == c] == "pool"
        assert pool.sum() == n_pool * 11
    # segment k of a class starts at row 1 + 1000 * (n - k): the last ones written are the earliest
    assert set(sw.x[(sw.part == "pool") & (sw.y == 0), 0, 0]) == {1.0, 2.0}
    assert set(sw.x[(sw.part == "pool") & (sw.y == 1), 0, 0]) == {4.0, 5.0, 6.0}
    assert sw.pool_seconds == {0: pytest.approx(12.0), 1: pytest.approx(18.0)}
    assert sw.eval_seconds == {0: pytest.approx(6.0), 1: pytest.approx(6.0)}


def test_one_segment_is_cut_in_time_with_a_window_between_the_sides():
    window, stride = 50, 25
    sw = _subject({0: 1}, length=600, window=window, stride=stride)
    starts = np.arange(len(sw.y)) * stride
    pool, ev = starts[sw.part == "pool"], starts[sw.part == "eval"]
    assert len(pool) and len(ev) and (sw.part == "gap").any()
    assert ev.min() >= pool.max() + window + window  # a window's gap between the last pool window's end and eval


def test_budget_is_shared_across_activities_and_capped_by_the_pool():
    sw = _subject({0: 2, 1: 4, 2: 3})  # pool 6 s, 18 s and 12 s
    index, used = select_budget(sw, 0.5)  # 30 s: 6 s for class 0 (all it has), 12 and 12 for the others
    assert used == {0: pytest.approx(6.0), 1: pytest.approx(12.0), 2: pytest.approx(12.0)}
    for c, seconds in used.items():
        chosen = index[sw.y[index] == c]
        assert np.all(sw.pool_end_s[chosen] <= seconds + 1e-9)
    assert set(sw.part[index]) == {"pool"}
    everything, used = select_budget(sw, 10.0)
    assert len(everything) == (sw.part == "pool").sum()
    assert sum(used.values()) == pytest.approx(36.0)


@settings(max_examples=50, deadline=None)
@given(
    available=st.dictionaries(st.integers(0, 11), st.floats(0, 1000, allow_nan=False), min_size=1, max_size=12),
    budget=st.floats(0, 5000, allow_nan=False),
)
def test_quotas_never_exceed_what_a_class_has_and_spend_the_budget(available, budget):
    quotas = class_quotas(available, budget)
    assert set(quotas) == set(available)
    for c, q in quotas.items():
        assert 0 <= q <= available[c] + 1e-9
    spent = sum(quotas.values())
    assert spent == pytest.approx(min(budget, sum(available.values())), rel=1e-9, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80), st.integers(0, 10_000))
def test_recording_order_reads_any_source_name(source, index):
    key = recording_order(source, index)
    assert key[2] == index
    rows = recording_order(f"{source}:rows 17-90", index)
    assert rows[1] == 17


def test_recording_order_of_a_file_name_with_a_line_break():
    # "$" matched before a trailing newline and "." stopped at one: such a name lost its row number
    assert recording_order("a\n:rows 5-9", 0) == ("a\n", 5, 0)
    assert recording_order("a:rows 5-9\n", 1) == ("a:rows 5-9\n", 0, 1)


# ---------------------------------------------------------------- the real data set


HAPT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hapt"


@pytest.mark.slow
@pytest.mark.skipif(not HAPT.is_dir(), reason=f"UCI HAPT is not at {HAPT} (see ../shared/data/README.md)")
def test_real_hapt_two_subjects(tmp_path):
    from edge_har.benchmarks.personalise import PersonaliseSettings, run_personalise
    from edge_har.convert.datasets import load_dataset
    from edge_har.convert.models import ModelConfig
    from edge_har.core.formats.hapt import HAPT_BASIC

    options: dict[str, Any] = {"classes": HAPT_BASIC}
    settings_ = PersonaliseSettings(
        data=HAPT,
        dataset_options=options,
        base=tmp_path / "base",
        subjects=("s2", "s9"),
        minutes=(1.0,),
        epochs=3,
        base_epochs=3,
        base_model=ModelConfig(conv_filters=(16,), kernel_size=5, lstm_units=(16,)),
        int8_minutes=None,
        progress=False,
    )
    section = run_personalise(settings_, load_dataset(HAPT, **options))
    assert section["data"]["labels"] == sorted(HAPT_BASIC)
    for s in section["subjects"]:
        # HAPT has at least four segments of every basic activity per subject: the pool takes whole ones
        assert s["windows"]["gap"] == 0 and 4.0 < s["pool_minutes"] < 7.0 and s["eval_minutes"] > 1.5
        assert s["budgets"][0]["minutes_used"] == pytest.approx(1.0)
