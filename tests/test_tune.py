"""``edge-har tune``: the search space, budget, table, plot and preset (fast), and real searches (slow).

The fast tests need no TensorFlow: the space is sampled from real Optuna studies, the table and the
plot are made from trials written to a real SQLite study, and the preset is parsed back with the
``edge-har convert`` parser. The slow ones run the command on the synthetic data set of
``tests/plugins/bundle.py``: a tiny search into SQLite (and ``--convert`` through convert's gate),
a pruner threshold no model can reach, a budget no model meets, and two worker processes sharing
one PostgreSQL study.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.cli import BY_NAME, build_parser, main  # noqa: E402
from edge_har.convert.models import ModelConfig  # noqa: E402
from edge_har.convert.train import TrainConfig, train_config_from_args  # noqa: E402
from edge_har.convert.tune import (  # noqa: E402
    Budget,
    TuneError,
    TuneResult,
    make_pruner,
    plot_trials,
    preset_document,
    ranked,
    read_preset,
    storage_url,
    trial_line,
    trials_table,
    write_preset,
)
from edge_har.convert.tune_space import (  # noqa: E402
    SearchSpace,
    configs_from_params,
    convert_flags,
    default_space,
    flags_to_argv,
    sample_params,
)
from tests.plugins.bundle import TINY_STRIDE, TINY_WINDOW  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

PNG = b"\x89PNG\r\n\x1a\n"


def _convert_args(argv: list[str], data: str = "data"):
    return build_parser("convert").parse_args(["convert", "--data", data, *argv])


# ---------------------------------------------------------------- fast: command line


def test_tune_is_one_subcommand_needing_the_train_extra_with_optuna():
    spec = BY_NAME["tune"]
    assert spec.extra == "train" and "optuna" in spec.requires and "tensorflow" in spec.requires


def test_help_explains_budget_storage_validation_and_the_preset(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in (
        "--budget-size-kb",
        "--budget-macs",
        "--budget-latency-ms",
        "postgresql://",
        "--study",
        "VALIDATION windows",
        "preset.json",
        "--convert",
        "--test-subjects",  # convert's split flags
        "--window",
        "infeasible",
    ):
        assert fragment in text, fragment


BUDGET_FLAGS = ("--trials", "--timeout", "--budget-size-kb", "--budget-macs", "--budget-latency-ms")
values = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "inf", "-inf", "nan", "1e6", "2_000", "0", "0.0", "1.5", "abc", "1e400", "--x"]),
    st.text(max_size=10),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(BUDGET_FLAGS), values)
def test_any_budget_or_trials_value_is_accepted_or_refused_in_one_line(flag, value):
    parser = build_parser("tune")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(["tune", "--data", "d", "--out", "o", f"{flag}={value}"])
    except SystemExit as exc:
        assert exc.code == 2
        lines = err.getvalue().strip().splitlines()
        errors = [line for line in lines if "error:" in line]
        assert len(errors) == 1 and lines[-1] == errors[0], err.getvalue()
        assert "Traceback" not in err.getvalue()
        return
    parsed = getattr(args, flag[2:].replace("-", "_"))
    assert isinstance(parsed, (int, float)) and math.isfinite(parsed) and parsed > 0
    if flag in ("--trials", "--budget-macs"):
        assert isinstance(parsed, int)


@pytest.mark.parametrize("spec", ["median", "none", "below:0.5", "below:1.01"])
def test_pruner_specs(spec):
    assert make_pruner(spec) is not None


@pytest.mark.parametrize("spec", ["mean", "below:", "below:-1", "below:nan"])
def test_bad_pruner_is_one_line(spec):
    with pytest.raises(TuneError, match="--pruner"):
        make_pruner(spec)


def test_storage_defaults_to_sqlite_beside_out_and_reads_postgresql_urls(tmp_path):
    url = storage_url(None, tmp_path / "runs" / "tune")
    assert url == f"sqlite:///{tmp_path / 'runs' / 'tune.optuna.sqlite3'}"
    pg = storage_url("postgresql://u@127.0.0.1:5432/test", tmp_path)
    assert pg.startswith("postgresql") and pg.endswith("://u@127.0.0.1:5432/test")
    assert storage_url("postgresql+psycopg://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"
    with pytest.raises(TuneError, match="--storage 'mysql://x'"):
        storage_url("mysql://x", tmp_path)


# ---------------------------------------------------------------- fast: space and preset


def test_every_sampled_point_is_a_valid_config_and_its_flags_parse_back_with_convert():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = default_space()
    base = TrainConfig(epochs=3, patience=2, seed=5)
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = sample_params(trial, space)
        model, train, augment = configs_from_params(params, base)
        seen.add(model.family)
        argv = flags_to_argv(convert_flags(model, train, augment))
        args = _convert_args(argv)
        assert ModelConfig.from_args(args) == model
        again = train_config_from_args(args)
        assert again == train, (again, train)
        study.tell(trial, 0.5)
    assert seen == set(space.families)


def test_space_refuses_unknown_families_and_widths():
    with pytest.raises(ValueError, match="unknown model family"):
        SearchSpace(families=("resnet",))
    with pytest.raises(ValueError, match="width"):
        SearchSpace(families=("cnn-lstm",), widths=(0.0,))


def _study(tmp_path: Path):
    """A study holding one trial of each kind, written as run_trial writes them."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    space = SearchSpace(families=("cnn-lstm", "tinyhar"), widths=(0.25,))
    base = TrainConfig(epochs=2, patience=1)
    rows = [
        ("ok", 0.71, 20_000),
        ("ok", 0.93, 30_000),
        ("infeasible", 0.97, 90_000),
        ("pruned", None, None),
        ("failed", None, None),
    ]
    for kind, f1, size in rows:
        trial = study.ask()
        params = sample_params(trial, space)
        model, train, augment = configs_from_params(params, base)
        trial.set_user_attr("flags", convert_flags(model, train, augment))
        trial.set_user_attr("params_line", "p")
        if kind == "pruned":
            trial.set_user_attr("pruned_at_epoch", 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        if kind == "failed":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        feasible = kind == "ok"
        for key, value in {
            "int8_val_macro_f1": f1,
            "int8_size_bytes": size,
            "int8_latency_ms": 0.1,
            "macs": None,
            "feasible": feasible,
            "violations": [] if feasible else ["size 87.9 kB > 40 kB"],
        }.items():
            trial.set_user_attr(key, value)
        study.tell(trial, f1 if feasible else float("-inf"))
    return study, storage


def test_table_ranks_within_budget_first_then_infeasible_pruned_failed(tmp_path):
    study, _ = _study(tmp_path)
    trials = study.get_trials()
    order = [t.number for t in ranked(trials)]
    assert order == [1, 0, 2, 3, 4]
    table = trials_table(trials)
    body = table.splitlines()[2:]
    assert "| 1 | 1 | ok | 0.9300 |" in body[0]
    assert "infeasible: size 87.9 kB > 40 kB" in body[2] and "pruned (epoch 1)" in body[3] and "failed" in body[4]
    assert "infeasible" in trial_line(trials[2]) and "pruned at epoch 1" in trial_line(trials[3])
    path = plot_trials(trials, Budget(size_kb=40), tmp_path / "plot" / "trials.png")
    assert path.read_bytes()[:8] == PNG
    # an infeasible trial's value, -inf, survives the SQLite storage
    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    sqlite_study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    sqlite_study.add_trial(trials[2])
    (again,) = optuna.load_study(study_name="s", storage=storage).trials
    assert again.value == float("-inf") and again.user_attrs["feasible"] is False


def test_plot_against_macs_shows_unscored_trials_and_the_macs_budget(tmp_path):
    done = optuna.trial.TrialState.COMPLETE
    trials = [
        optuna.trial.create_trial(
            state=done, value=0.8, user_attrs={"macs": 2e5, "int8_size_bytes": 9000, "int8_val_macro_f1": 0.8}
        ),
        optuna.trial.create_trial(
            state=done, value=float("-inf"), user_attrs={"macs": 9e6, "feasible": False, "violations": ["MACs"]}
        ),
        optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={"macs": 1e5}),
    ]
    path = plot_trials(trials, Budget(macs=1_000_000), tmp_path / "macs.png")
    assert path.read_bytes()[:8] == PNG


def test_no_feasible_trial_message_names_the_budget_and_what_was_seen(tmp_path):
    study, _ = _study(tmp_path)
    result = TuneResult(study, None, "sqlite:///x", "", {})
    message = result.infeasible_message(Budget(size_kb=0.5, latency_ms=0.01))
    assert "\n" not in message
    assert "meets the budget (int8 size <= 0.5 kB, int8 latency <= 0.01 ms)" in message
    assert "smallest int8 size 19.5 kB" in message and "1 over budget, 1 pruned, 1 failed" in message


@pytest.mark.parametrize("name", ["preset.json", "preset.yaml"])
def test_preset_file_is_convert_flags(tmp_path, name):
    from edge_har.convert.pipeline import ConvertOptions
    from edge_har.convert.tune import TuneOptions

    study, _ = _study(tmp_path)
    best = ranked(study.get_trials())[0]
    options = TuneOptions(
        convert=ConvertOptions(out=tmp_path / "o", window=64, stride=16, train_stride=8, skip_short=True),
        space=default_space(),
        budget=Budget(size_kb=40),
        protocol="uci-har",
    )
    path = write_preset(preset_document(best, options, "sqlite:///study.sqlite3"), tmp_path / name)
    document = read_preset(path)
    assert document["trial"] == best.number and document["budget"]["size_kb"] == 40
    args = _convert_args(document["argv"])
    assert (args.window, args.stride, args.train_stride, args.skip_short, args.preset) == (
        "64",
        "16",
        "8",
        True,
        "uci-har",
    )
    assert (
        ModelConfig.from_args(args).to_json()
        == ModelConfig.from_args(_convert_args(flags_to_argv(best.user_attrs["flags"]))).to_json()
    )
    assert flags_to_argv(document["flags"]) == document["argv"]


def test_convert_namespace_keeps_tunes_data_and_split_flags(tmp_path):
    from edge_har.convert.tune_cli import convert_namespace

    args = build_parser("tune").parse_args(
        ["tune", "--data", "d", "--sample-rate", "50", "--split", "subject", "--test-subjects", "s1,s2", "--out", "o"]
    )
    ns = convert_namespace(args, ["--family", "tinyhar", "--epochs", "3"], tmp_path / "b")
    assert ns.command == "convert" and ns.family == "tinyhar" and ns.epochs == 3 and ns.out == tmp_path / "b"
    assert (ns.sample_rate, ns.split, ns.test_subjects) == (args.sample_rate, "subject", args.test_subjects)


# ---------------------------------------------------------------- slow: real searches

TINY = ["--window", str(TINY_WINDOW), "--stride", str(TINY_STRIDE), "--calibration-size", "60", "--latency-runs", "5"]
SMALL = ["--families", "cnn-lstm", "--widths", "0.125", "--epochs", "1", "--patience", "1"]


@pytest.mark.slow
def test_tiny_search_in_sqlite_writes_study_table_plot_preset_and_converts(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "runs" / "tune"
    code = main(
        ["tune", "--data", str(tiny_dataset_dir), *TINY, *SMALL, "--trials", "2", "--pruner", "none", "--out", str(out)]
        + ["--convert", "--no-progress"]
    )
    text = capsys.readouterr().out
    assert code in (0, 3), text  # 3: the converted bundle refused by convert's int8 gate (its normal path)
    db = tmp_path / "runs" / "tune.optuna.sqlite3"
    with sqlite3.connect(db) as conn:
        states = [row[0] for row in conn.execute("SELECT state FROM trials ORDER BY number")]
    assert states == ["COMPLETE", "COMPLETE"]
    assert _states((out / "trials.md").read_text()) == {0: "ok", 1: "ok"}
    assert (out / "trials.png").read_bytes()[:8] == PNG
    document = read_preset(out / "preset.json")
    args = _convert_args(document["argv"], str(tiny_dataset_dir))
    assert ModelConfig.from_args(args).family == "cnn-lstm" and args.epochs == 1
    assert "| rank | trial | state | int8 val macro-F1 |" in text and "best: trial" in text
    bundle = out / "bundle"
    assert (bundle / "bundle.json").is_file() if code == 0 else Path(f"{bundle}.refused").is_dir()


@pytest.mark.slow
def test_a_pruner_threshold_no_model_reaches_prunes_every_trial(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "prune"
    code = main(
        ["tune", "--data", str(tiny_dataset_dir), *TINY, *SMALL, "--epochs", "3", "--trials", "1"]
        + ["--pruner", "below:1.01", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 1
    study = optuna.load_study(study_name="edge-har-tune", storage=storage_url(None, out))
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["pruned_at_epoch"] == 1
    assert list(trial.intermediate_values) == [0]
    assert _states((out / "trials.md").read_text()) == {0: "pruned (epoch 1)"}
    assert captured.err.strip().splitlines()[-1].startswith("edge-har tune: error: no trial of study edge-har-tune")


@pytest.mark.slow
def test_a_budget_no_model_meets_gives_infeasible_trials_and_one_clear_line(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "tight"
    code = main(
        ["tune", "--data", str(tiny_dataset_dir), *TINY, *SMALL, "--trials", "1", "--pruner", "none"]
        + ["--budget-size-kb", "0.5", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 1
    line = captured.err.strip().splitlines()[-1]
    assert "no trial of study edge-har-tune meets the budget (int8 size <= 0.5 kB)" in line
    assert "1 over budget" in line and "smallest int8 size" in line
    (trial,) = optuna.load_study(study_name="edge-har-tune", storage=storage_url(None, out)).trials
    assert trial.user_attrs["feasible"] is False and math.isinf(trial.value) and trial.value < 0
    assert "infeasible: size" in (out / "trials.md").read_text()
    assert not (out / "preset.json").exists()
    assert json.loads((out / "tune.json").read_text())["best_trial"] is None


@pytest.mark.slow
def test_a_macs_budget_is_checked_before_training(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "macs"
    code = main(
        ["tune", "--data", str(tiny_dataset_dir), *TINY, *SMALL, "--trials", "2", "--budget-macs", "1e3"]
        + ["--out", str(out)]
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and "meets the budget (MACs <= 1,000)" in line and "fewest MACs" in line
    trials = optuna.load_study(study_name="edge-har-tune", storage=storage_url(None, out)).trials
    assert len(trials) == 2
    for trial in trials:
        assert trial.user_attrs["macs"] > 1000 and trial.user_attrs["feasible"] is False
        assert "train_seconds" not in trial.user_attrs  # refused before training
    assert not (out / "trials").exists()
    assert (out / "trials.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_two_worker_processes_share_one_postgresql_study(tiny_dataset_dir, tmp_path, postgres_url):
    storage = postgres_url
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "edge_har", "--log-level", "WARNING", "tune", "--data", str(tiny_dataset_dir)]
            + [*TINY, *SMALL, "--trials", "1", "--pruner", "none", "--storage", storage, "--study", "shared"]
            + ["--out", str(tmp_path / f"worker{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    results = [w.communicate(timeout=900) for w in workers]
    for worker, (stdout, stderr) in zip(workers, results):
        assert worker.returncode == 0, stderr[-2000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["worker_out"] for t in study.trials} == {
        str((tmp_path / f"worker{i}").resolve()) for i in range(2)
    }
    # the worker that finished last printed (and wrote) a table with both workers' trials, both done
    tables = [_states((tmp_path / f"worker{i}" / "trials.md").read_text()) for i in range(2)]
    assert {0: "ok", 1: "ok"} in tables, tables


def _states(table: str) -> dict[int, str]:
    """trial number -> state, from a trials.md table."""
    rows = [line.split("|")[1:-1] for line in table.strip().splitlines()[2:]]
    return {int(cells[1]): cells[2].strip() for cells in rows}
