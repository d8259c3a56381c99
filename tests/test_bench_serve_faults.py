"""``edge-har bench serve-faults``: the real ``edge-har serve`` under 20 publishing devices through faults, exact books.

Each run is the suite itself on real parts: a private mosquitto with persistence, the server as a
subprocess, the daemon's Publisher as the devices, a throwaway PostgreSQL cluster or a small tmpfs.
The books must close: every prediction a device published is stored, rejected (counted by reason)
or counted as a gap; nothing is unaccounted. The broker and server kills run in the default suite
(short phases); the PostgreSQL restarts and the full disk are marked slow.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from edge_har.benchmarks.serve_faults import (  # noqa: E402
    ServeFaultsSettings,
    normalise_ingest,
    run_scenario,
)
from edge_har.cli import main  # noqa: E402
from edge_har.mqtt.local_broker import find_mosquitto  # noqa: E402

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def quick(**overrides: Any) -> ServeFaultsSettings:
    return ServeFaultsSettings.quick_settings(progress=False, **overrides)


def assert_books_close(row: dict[str, Any], settings: ServeFaultsSettings) -> None:
    """Every published prediction is stored, rejected or a gap; the server settled; no traceback."""
    assert row["status"] == "ok", row.get("error")
    assert row["settled"], row["ingest"]
    publish_s = settings.before_s + settings.down_s + settings.after_s
    assert row["published"] == round(settings.devices * settings.rate_hz * publish_s), row["devices_report"]
    assert row["device_unsent"] == 0, row["per_device"]
    assert row["contract_keys_missing"] == [], row["ingest"]
    assert row["published"] == row["stored"] + row["rejected_predictions"] + row["gaps"], row
    assert row["unaccounted"] == 0 and row["devices_unaccounted"] == 0 and row["books_exact"]
    for device in row["per_device"]:  # each device's own books close too (gaps and rejected from /api/devices)
        assert device["published"] == device["stored"] + device["rejected"] + device["gaps"], device
    assert row["stored_other_run"] == 0
    # valid payloads only: nothing may be rejected, and what is missing from the store is what the gaps say
    assert row["rejected_predictions"] == 0 and not any(row["rejected_by_reason"].values()), row["rejected_by_reason"]
    assert row["missing_in_store"] == row["gaps"]
    assert row["outage_s"] >= settings.down_s
    # every device stored again after the outage, unless a busy machine started the server after the devices stopped
    assert row["recovery_s"] is not None or row["outlasted_publishing"], row["events"]
    assert row["serve_tracebacks"] == 0, row["serve_log_tail"]


@pytest.mark.slow  # a real run of its own (~20-35 s): CI's slow step runs it
@needs_mosquitto
def test_broker_kill_through_the_command_line_closes_the_books(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    args = ["bench", "serve-faults", "--quick", "--scenarios", "broker_kill", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    section = json.loads((out / "results.json").read_text())["suites"]["serve_faults"]
    for key in ("date", "git", "machine", "settings", "definition", "rows", "noisy"):
        assert key in section, key
    (row,) = section["rows"]
    assert row["fault"] == "broker_kill" and row["events"][0].endswith("broker kill -9")
    assert_books_close(row, quick())
    assert len(row["per_device"]) == 20
    for device in row["per_device"]:
        assert device["published"] == 55 and device["device_dropped"] == 0
    line = next(line for line in printed.splitlines() if line.startswith("| broker_kill"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "1100" and cells[7] == "0" and cells[-1] == "exact", line


@pytest.mark.slow  # a real run of its own (~20-35 s): CI's slow step runs it
@needs_mosquitto
def test_serve_kill_and_restart_keeps_the_books(tmp_path: Path) -> None:
    settings = quick()
    row = run_scenario("serve_kill", settings, tmp_path / "serve_kill")
    row["status"] = "ok"
    assert row["serve_restarts"] == 1 and any("serve kill -9" in e for e in row["events"])
    assert_books_close(row, settings)
    # what the killed server had received and not yet stored was never acknowledged: the broker re-sent it
    assert row["gaps"] == 0 and row["missing_in_store"] == 0, row["ingest"]


@pytest.mark.slow
@needs_mosquitto
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_keeps_the_books(tmp_path: Path, mode: str) -> None:
    settings = quick()
    row = run_scenario(f"postgres_restart_{mode}", settings, tmp_path / mode)
    row["status"] = "ok"
    assert any(f"pg_ctl stop -m {mode}" in e for e in row["events"])
    assert row["db_outages"] >= 1, row["ingest"]  # the restart was felt, and survived
    assert_books_close(row, settings)


@pytest.mark.slow
@needs_mosquitto
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small tmpfs needs root")
def test_a_full_disk_under_sqlite_keeps_the_books(tmp_path: Path) -> None:
    settings = quick()
    row = run_scenario("disk_full", settings, tmp_path / "disk")
    row["status"] = "ok"
    assert re.search(r"disk full: filler took [\d.]+ MB, 0 bytes left", row["events"][0]), row["events"]
    assert row["db_outages"] >= 1, row["ingest"]  # SQLite said "database or disk is full", and ingest waited
    assert_books_close(row, settings)


def test_unknown_scenario_is_one_clear_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "serve-faults", "--scenarios", "broker_kill,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--scenarios: unknown nope; choose from broker_kill, serve_kill" in err


def test_an_older_server_without_api_ingest_reads_as_missing_keys() -> None:
    legacy = {"received": 10, "predictions": 9, "stored": 7, "malformed": 1, "connected": True, "subscribed": True}
    status = normalise_ingest(legacy, "/api/devices")
    assert status["stored"] == 7 and status["duplicates"] == 2 and status["rejected"] == {"malformed": 1}
    assert status["gaps"] is None and status["rejected_predictions"] is None and status["queued"] is None
    current = normalise_ingest(
        {"stored": 5, "duplicates": 0, "rejected": {"too_deep": 2}, "rejected_predictions": 1, "gaps": 3, "queued": 0},
        "/api/ingest",
    )
    assert (current["gaps"], current["rejected_predictions"], current["rejected"]) == (3, 1, {"too_deep": 2})
