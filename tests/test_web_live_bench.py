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
        ["bench", "web-ingest", "--backends", "sqlite", "--rates", "150", "--trial-s", "1.5", "--out", str(out)]
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
