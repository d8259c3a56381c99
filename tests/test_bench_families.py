"""``edge-har bench families``: real conversions in subprocesses, the table, the files, resuming, the argument errors.

The conversions are the real ``edge-har convert`` on the tiny synthetic data set; the slow test
converts two families x two seeds (about 20 s each on 2 cores), the fast ones use conversions
that fail before any training, and a refused folder written by convert's own ``keep_refused``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_ARGS = [
    "--window", "64", "--stride", "16", "--conv-filters", "4", "--lstm-units", "4", "--epochs", "1",
    "--calibration-size", "30", "--allow-int8-drop",
]  # fmt: skip


def _bench(capsys, *args: str) -> tuple[int, str, str]:
    from edge_har.cli import main

    try:
        code = main(["bench", "families", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _section(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["suites"]["families"]


@pytest.mark.slow
def test_two_families_two_seeds_table_files_and_a_second_run_reuses_every_seed(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "families"
    args = [
        "--families", "cnn-lstm,tinyhar", "--seeds", "42,43", "--out", str(out), "--latency-runs", "200",
        "--", "--data", str(tiny_dataset_dir), *TINY_ARGS,
    ]  # fmt: skip
    code, stdout, _ = _bench(capsys, *args)
    assert code == 0, stdout

    section = _section(out)
    assert section["complete"] is True and section["conversions_run"] == 4 and section["conversions_reused"] == 0
    assert section["cpu"].startswith("CPU: ")
    assert section["settings"]["seeds"] == [42, 43] and section["settings"]["convert_args"][-1] == "--allow-int8-drop"
    assert set(section["families"]) == {"cnn-lstm", "tinyhar"}
    for family, entry in section["families"].items():
        rows = entry["rows"]
        assert [r["seed"] for r in rows] == [42, 43]
        for r in rows:
            # the tiny 1-epoch models may be refused as degenerate: either outcome is a row, never a crash
            assert r["verdict"] in ("pass", "accepted", "refused"), r
            assert r["reused"] is False and Path(r["log"]).is_file()
            where = out / family / f"seed-{r['seed']}"
            if r["verdict"] == "refused":
                assert (where.parent / f"{where.name}.refused" / "refused.json").is_file() and r["message"]
            else:
                assert (where / "bundle.json").is_file()
                assert json.loads((where / "bundle.json").read_text())["training"]["model"]["family"] == family
            assert isinstance(r["int8_accuracy"], float)
        summary = entry["summary"]
        assert summary["seeds"] == 2 and summary["int8_accuracy"]["n"] == 2
        accs = [r["int8_accuracy"] for r in rows]
        assert summary["int8_accuracy"]["mean"] == pytest.approx(sum(accs) / 2, abs=1e-6)
        if any(r["verdict"] != "refused" for r in rows):
            assert entry["int8_size_bytes"] > 0 and entry["macs"] > 0
            latency = entry["latency"]
            assert latency["calls"] == 200 and latency["threads"] == 1 and latency["input"] == "random"
            assert 0 < latency["p50_ms"] <= latency["p90_ms"]
        assert entry["training_seconds_mean"] > 0
    tiny, cnn = section["families"]["tinyhar"], section["families"]["cnn-lstm"]
    if tiny["macs"] and cnn["macs"]:
        assert tiny["macs"] != cnn["macs"]  # two architectures, not one twice

    md = (out / "families.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| family"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "family", "seeds", "int8 accuracy % mean ± std", "int8 macro-F1 % mean ± std", "float32 accuracy %",
        "int8 size KB", "MACs", "p50 ms", "training s",
    ]  # fmt: skip
    assert "| cnn-lstm " in md and "| tinyhar " in md and "### cnn-lstm" in md and "### tinyhar" in md
    assert md.count("| mean +- std |") == 2 and "nan" not in md.lower()
    assert "random normalised windows" in md
    assert "| cnn-lstm " in stdout and "| mean +- std |" in stdout
    png = out / "families.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and section["plots"]["families"] == str(png)

    logs = sorted(out.glob("*/seed-*.log"))
    assert len(logs) == 4
    before = {p: p.stat().st_mtime_ns for p in logs}
    code, stdout, _ = _bench(capsys, *args)
    assert code == 0
    again = _section(out)
    assert again["conversions_run"] == 0 and again["conversions_reused"] == 4
    assert all(r["reused"] for e in again["families"].values() for r in e["rows"])
    assert {p: p.stat().st_mtime_ns for p in logs} == before
    for family in ("cnn-lstm", "tinyhar"):
        assert again["families"][family]["summary"] == section["families"][family]["summary"]


@pytest.mark.slow  # two convert processes (~6 s each to import and fail)
def test_a_failing_conversion_is_an_error_row_with_its_logs_last_line_and_the_suite_goes_on(tmp_path, capsys):
    out = tmp_path / "families"
    code, stdout, _ = _bench(
        capsys, "--families", "tinyhar", "--seeds", "2", "--out", str(out), "--", "--data", str(tmp_path / "nowhere")
    )
    assert code == 1  # every conversion failed
    entry = _section(out)["families"]["tinyhar"]
    assert [r["seed"] for r in entry["rows"]] == [42, 43] and entry["errors"] == 2
    for r in entry["rows"]:
        assert r["verdict"] == "error" and r["exit_code"] == 2 and r["reused"] is False
        log_text = Path(r["log"]).read_text()
        assert log_text.startswith("$ ") and "--family tinyhar" in log_text and f"--seed {r['seed']}" in log_text
        assert r["message"] == log_text.strip().splitlines()[-1] and "nowhere" in r["message"]
    assert entry["summary"]["seeds"] == 0 and entry["latency"] is None
    md = (out / "families.md").read_text()
    assert "| tinyhar " in md and "0/2 (2 error)" in md and "- seed 43: error" in md
    assert "0/2 (2 error)" in stdout


def test_a_refused_seed_left_by_an_earlier_run_is_reused_as_a_refused_row(tmp_path, capsys):
    from edge_har.convert.skeleton import keep_refused

    out = tmp_path / "families"
    staging = out / "cnn-lstm" / ".seed-42.partial"  # where convert stages it: beside the seed's folder
    (staging / "training").mkdir(parents=True)
    document = {
        "metrics": {
            "variants": {"float32": {"accuracy": 0.5}, "int8": {"accuracy": 0.25, "macro_f1": 0.2}},
            "gate": {"verdict": "refused", "message": "refusing to write the bundle: int8 dropped 25 points"},
        },
        "training": {"epochs_run": 3, "seconds": 7.5},
    }
    keep_refused(staging, document, out / "cnn-lstm" / "seed-42")
    code, _, _ = _bench(
        capsys, "--families", "cnn-lstm", "--seeds", "42,43", "--out", str(out), "--", "--data", str(tmp_path / "no")
    )
    assert code == 0  # one seed has figures
    section = _section(out)
    refused, failed = section["families"]["cnn-lstm"]["rows"]
    assert refused["verdict"] == "refused" and refused["reused"] is True
    assert refused["int8_accuracy"] == 0.25 and refused["float32_accuracy"] == 0.5 and refused["train_seconds"] == 7.5
    assert "25 points" in refused["message"] and not (out / "cnn-lstm" / "seed-42.log").exists()
    assert failed["verdict"] == "error" and section["conversions_run"] == 1 and section["conversions_reused"] == 1
    summary = section["families"]["cnn-lstm"]["summary"]
    assert summary["refused"] == 1 and summary["int8_accuracy"]["mean"] == 0.25
    assert "1 refused" in (out / "families.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--families", "cnn-lstm,nope", "--", "--data", "d"], "unknown nope; known: cnn-lstm, conv2d-lstm"),
        ([], "no arguments for edge-har convert: give them after --"),
        (["--"], "no arguments for edge-har convert: give them after --"),
        (["--", "--preset", "uci-har"], "give no --data for edge-har convert"),
        (["--", "--data", "d", "--seed", "7"], "--seed set by the suite itself"),
        (["--", "--data=d", "--out=x"], "--out=x set by the suite itself"),
        (["--seeds", "0", "--", "--data", "d"], "--seeds 0: between 2 and 50 seeds"),
        (["--seeds", "42,42", "--", "--data", "d"], "different seeds"),
        (["--seeds", "a", "--", "--data", "d"], "a count (5) or a comma-separated list"),
        (["extra", "--", "--data", "d"], "unexpected argument 'extra'"),
    ],
)
def test_argument_errors_are_one_line_before_anything_runs(tmp_path, capsys, args, message):
    out = tmp_path / "families"
    code, _, err = _bench(capsys, "--out", str(out), *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("edge-har bench: error: ")
    assert not out.exists()


def test_out_is_required_and_latency_runs_has_a_floor(tmp_path, capsys):
    code, _, err = _bench(capsys, "--", "--data", "d")
    assert code == 2 and "--out" in err
    code, _, err = _bench(capsys, "--out", str(tmp_path / "o"), "--latency-runs", "50", "--", "--data", "d")
    assert code == 2 and "at least 200" in err and not (tmp_path / "o").exists()


def test_help_says_what_is_run_and_written_with_the_example(capsys):
    code, stdout, _ = _bench(capsys, "--help")
    assert code == 0
    for text in (
        "python -m edge_har convert CONVERT_ARGS --family F --seed S --out OUT/F/seed-S --no-progress",
        "OUT/F/seed-S.log",
        "reused",
        "refused",
        "results.json",
        "families.md",
        "families.png",
        "--families cnn-lstm,tinyhar --seeds 42,43,44,45,46",
        "-- --data ../shared/data/hapt --preset uci-har",
        "--latency-runs",
    ):
        assert text in stdout, text
