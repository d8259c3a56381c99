"""``edge-har bench web-ingest`` end to end at a small rate: the real ``edge-har serve``, a real mosquitto."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from edge_har.cli import main  # noqa: E402


def test_bench_web_ingest_stores_every_prediction_and_times_the_devices_api(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(
        [
            "bench",
            "web-ingest",
            "--backends",
            "sqlite",
            "--backlog",
            "0",
            "--rates",
            "150",
            "--trial-s",
            "1.5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    section = json.loads((out / "results.json").read_text())["suites"]["web_ingest"]
    (backend,) = section["backends"]
    (step,) = backend["steps"]
    assert step["sent"] == 225 and step["stored"] == 225  # every prediction sent is in the store, once
    assert step["kept_up"] and step["drain_s"] is not None and step["malformed"] == 0
    assert step["devices_api"]["n"] >= 5 and step["devices_api"]["p50_ms"] > 0
    assert backend["max_rate_kept_up"] == 150
    printed = capsys.readouterr().out
    assert "| sqlite" in printed and "kept up to 150/s" in printed


def test_bench_web_ingest_names_a_bad_backend(capsys):
    assert main(["bench", "web-ingest", "--backends", "sqlite,oracle"]) == 2
    assert "--backends: unknown oracle" in capsys.readouterr().err


def test_bench_web_ingest_drains_a_backlog_exactly_once(tmp_path, capsys):
    """The drain comparison in small: a backlog queued while serve is away is stored once, and timed."""
    out = tmp_path / "bench"
    argv = ["bench", "web-ingest", "--backends", "sqlite", "--backlog", "300", "--baseline", "none", "--out", str(out)]
    assert main(argv) == 0
    section = json.loads((out / "results.json").read_text())["suites"]["web_ingest"]
    (row,) = section["drain"]
    assert (row["code"], row["store"], row["processes"], row["sent"]) == ("current", "sqlite", 1, 300)
    assert row["exactly_once"] and row["rows"] == 300 and row["stored"] == 300
    assert section["backends"] == []  # no --rates: no paced steps
    assert "| current" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_web_ingest_compares_with_the_baseline_on_both_stores_and_several_processes(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "web-ingest", "--backlog", "20000", "--processes", "1,2", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())["suites"]["web_ingest"]["drain"]
    seen = {(r["code"].split()[0], r["store"], r["processes"]) for r in rows}
    assert seen == {
        ("baseline", "sqlite", 1),
        ("current", "sqlite", 1),
        ("baseline", "postgresql", 1),
        ("current", "postgresql", 1),
        ("current", "postgresql", 2),
    }
    assert all(r["exactly_once"] and r["stored_per_s"] for r in rows), rows
