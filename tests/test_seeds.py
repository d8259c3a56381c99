"""``convert --seeds``: one conversion per seed on one split, the mean and spread, the table kept."""

from __future__ import annotations

import json
import math

import pytest

from edge_har.convert.seeds import parse_seeds, seeds_dir, summarise, table
from edge_har.convert.skeleton import ConvertError


def test_seeds_are_a_count_from_the_first_or_a_list():
    assert parse_seeds(None, 42) == [] and parse_seeds("", 42) == []
    assert parse_seeds("5", 42) == [42, 43, 44, 45, 46]
    assert parse_seeds("1, 7,3", 0) == [1, 7, 3]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1", "between 2 and 50"),
        ("x", "a count (5) or a comma-separated list"),
        ("1,1", "2 to 50 different seeds"),
        ("3,-1", "seeds are >= 0"),
        ("99", "between 2 and 50"),
    ],
)
def test_a_bad_seeds_value_names_the_flag(text, says):
    with pytest.raises(ConvertError, match=None) as info:
        parse_seeds(text, 0)
    assert str(info.value).startswith("--seeds ") and says in str(info.value)


def test_the_summary_is_the_mean_and_sample_spread_and_the_table_has_no_nan():
    rows = [
        {
            "seed": 1,
            "verdict": "pass",
            "int8_accuracy": 0.90,
            "int8_macro_f1": 0.88,
            "float32_accuracy": 0.91,
            "val_loss": 0.30,
        },
        {
            "seed": 2,
            "verdict": "pass",
            "int8_accuracy": 0.94,
            "int8_macro_f1": 0.92,
            "float32_accuracy": 0.95,
            "val_loss": 0.25,
        },
        {
            "seed": 3,
            "verdict": "refused",
            "int8_accuracy": 0.80,
            "int8_macro_f1": None,
            "float32_accuracy": 0.93,
            "val_loss": math.inf,
        },
    ]
    s = summarise(rows)
    assert s["seeds"] == 3 and s["refused"] == 1
    assert s["int8_accuracy"]["mean"] == pytest.approx(0.88) and s["int8_accuracy"]["n"] == 3
    assert s["int8_accuracy"]["std"] == pytest.approx(0.0721110, abs=1e-6)  # sample std of .90, .94, .80
    assert s["int8_macro_f1"]["n"] == 2 and s["int8_macro_f1"]["min"] == 0.88
    text = table(rows, s, chosen=2)
    assert "| 2 (published) | 94.00 | 92.00 | 95.00 | 0.2500 | pass |" in text
    assert "| 3 | 80.00 | - | 93.00 | - | refused |" in text
    assert "| mean +- std | 88.00 +- 7.21 |" in text and "nan" not in text.lower() and "inf" not in text


@pytest.mark.slow
def test_two_seeds_convert_and_the_lower_validation_loss_is_published(tiny_dataset_dir, tmp_path):
    from edge_har.convert.pipeline import run_convert
    from edge_har.convert.seeds import run_seeds
    from edge_har.convert.train import TrainConfig
    from edge_har.core.bundle import Bundle
    from tests.plugins.bundle import tiny_convert_options

    train = TrainConfig(epochs=3, batch_size=32, patience=3, learning_rate=5e-3, seed=3, verbose=0)
    options = tiny_convert_options(tmp_path / "b", data=tiny_dataset_dir, train=train)
    out = run_seeds(options, [3, 4], run_convert)
    record = Bundle.load(out).metrics["seeds"]
    rows = record["per_seed"]
    assert [r["seed"] for r in rows] == [3, 4] and record["summary"]["seeds"] == 2
    best = min(rows, key=lambda r: r["val_loss"])
    assert record["published_seed"] == best["seed"]
    published = json.loads((out / "bundle.json").read_text())
    kept = json.loads((seeds_dir(out) / f"seed-{best['seed']}" / "bundle.json").read_text())
    assert published["model_id"] == kept["model_id"]
    assert published["training"]["config"]["seed"] == best["seed"]
    assert (seeds_dir(out) / "seeds.md").read_text().count("\n| ") >= 3
    accs = [r["int8_accuracy"] for r in rows]
    assert record["summary"]["int8_accuracy"]["mean"] == pytest.approx(sum(accs) / 2, abs=1e-6)


def test_the_flag_is_documented_and_checked_before_any_data_is_read(tmp_path, capsys):
    from edge_har.cli import main

    def cli(*args):
        try:
            code = main(["convert", *args])
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr()

    code, out = cli("--help")
    assert code == 0 and "--seeds N|LIST" in out.out
    code, out = cli("--data", str(tmp_path / "nowhere"), "--seeds", "1")
    assert code != 0 and "--seeds 1: between 2 and 50 seeds" in out.err
    code, out = cli("--data", str(tmp_path / "nowhere"), "--augment", "jiter=1")
    assert code != 0 and "'jiter=1' is not KEY=VALUE" in out.err
