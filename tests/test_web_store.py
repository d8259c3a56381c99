"""The web store on real databases: every test runs on SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

pytest.importorskip("sqlalchemy")

from edge_har.web import queries  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.store import HISTORY_LIMIT, StoreError, open_store, open_store_url  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

FAR = 1e10  # an until after every row


def history(store, device_id, since, limit=HISTORY_LIMIT, step_s=None):
    """The API's history read (``since < ts``, the newest ``limit`` kept), without its truncated flag."""
    return queries.history_range(store, device_id, float(since), FAR, limit, step_s)[0]


def status_history(store, device_id, since):
    return queries.status_range(store, device_id, float(since), FAR)


DAY = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp()  # a fixed UTC day: results cannot drift
PROBS = {"Walk": 0.7, "Sit": 0.2, "Wave": 0.1}


def row(device: str, run: str, seq: int, ts: float, label: str = "Walk", received_at: float | None = None) -> dict:
    return {
        "device_id": device,
        "run_id": run,
        "seq": seq,
        "ts": ts,
        "label": label,
        "confidence": PROBS.get(label, 0.5),
        "probabilities": dict(PROBS),
        "model_id": "tiny-model",
        "variant": "int8",
        "inference_ms": 0.8,
        "received_at": time.time() if received_at is None else received_at,
    }


@pytest.fixture
def store(db_url):
    s = open_store_url(db_url)
    yield s
    s.close()


def test_predictions_round_trip_and_the_newest_is_the_current_activity(store):
    rows = [row("pi-a", "run1", i, DAY + i * 0.5, "Walk" if i < 3 else "Sit") for i in range(5)]
    assert store.add_predictions(rows) == 5
    got = history(store, "pi-a", since=DAY - 1)
    assert [(h["seq"], h["label"], h["run_id"]) for h in got] == [
        (0, "Walk", "run1"),
        (1, "Walk", "run1"),
        (2, "Walk", "run1"),
        (3, "Sit", "run1"),
        (4, "Sit", "run1"),
    ]
    assert got[0]["ts"] == pytest.approx(DAY)
    (device,) = store.devices()
    assert device.device_id == "pi-a" and device.run_id == "run1" and device.model_id == "tiny-model"
    assert device.activity is not None
    assert (device.activity.label, device.activity.seq, device.activity.confidence) == ("Sit", 4, 0.2)
    assert device.activity.probabilities == PROBS  # the JSON column gives back what went in


def test_a_redelivered_prediction_is_stored_once(store):
    rows = [row("pi-a", "run1", i, DAY + i) for i in range(4)]
    assert store.add_predictions(rows) == 4
    # QoS 1 re-delivery after a reconnect: the same (device, run, seq) again, also twice in one batch
    assert store.add_predictions([rows[1], rows[2], rows[2]]) == 0
    assert store.add_predictions([rows[3], row("pi-a", "run1", 4, DAY + 4)]) == 1
    # a restart: seq starts again at 0 under a new run id, which is a new prediction
    assert store.add_predictions([row("pi-a", "run2", 0, DAY + 10)]) == 1
    # another device's seq 0 is its own
    assert store.add_predictions([row("pi-b", "run1", 0, DAY)]) == 1
    assert store.counts()["predictions"] == 7


def test_devices_older_than_the_run_id_fall_back_to_seq_and_window_end(store):
    first = row("old-pi", "", 0, DAY)
    after_restart = row("old-pi", "", 0, DAY + 60)  # seq 0 again, no run id: told apart by its window end
    assert store.add_predictions([first, after_restart, first]) == 2
    assert store.devices()[0].run_id is None


def test_restarting_loses_nothing_stored(db_url):
    s = open_store_url(db_url)
    s.add_predictions([row("pi-a", "run1", i, DAY + i) for i in range(3)])
    s.set_status("pi-a", "online", DAY)
    s.set_stats("pi-a", {"windows_per_s": 2.0, "stats_interval_s": 5.0}, DAY)
    s.close()
    again = open_store_url(db_url)  # what a server restart does: open the same database
    try:
        assert len(history(again, "pi-a", since=0)) == 3
        (device,) = again.devices()
        assert device.status == "online" and device.stats == {"windows_per_s": 2.0, "stats_interval_s": 5.0}
        assert device.stats_interval_s == 5.0
        assert again.add_predictions([row("pi-a", "run1", 2, DAY + 2)]) == 0  # de-dup across the restart
    finally:
        again.close()


def test_status_changes_are_recorded_once_per_change(store):
    t = DAY
    for status in ("online", "online", "offline", "offline", "online", "stopped"):
        t += 1
        store.set_status("pi-a", status, t)
    changes = status_history(store, "pi-a", since=0)
    assert [c["status"] for c in changes] == ["online", "offline", "online", "stopped"]
    assert store.devices()[0].status == "stopped"
    assert [c["status"] for c in status_history(store, "pi-a", since=DAY + 4.5)] == ["online", "stopped"]


def test_history_since_is_exclusive_oldest_first_and_keeps_the_newest_when_limited(store):
    store.add_predictions([row("pi-a", "run1", i, DAY + i) for i in range(10)])
    store.add_predictions([row("pi-b", "run1", i, DAY + i) for i in range(10)])
    assert [h["seq"] for h in history(store, "pi-a", since=DAY + 6)] == [7, 8, 9]
    assert [h["seq"] for h in history(store, "pi-a", since=DAY + 2, limit=3)] == [7, 8, 9]
    assert history(store, "pi-a", since=DAY + 9) == []
    assert history(store, "nobody", since=0) == []


def test_history_thinned_to_the_newest_prediction_per_step(store):
    store.add_predictions([row("pi-a", "run1", i, DAY + i * 0.5, "Walk" if i < 50 else "Sit") for i in range(100)])
    store.add_predictions([row("pi-b", "run1", i, DAY + i * 0.5) for i in range(100)])
    thinned = history(store, "pi-a", since=DAY - 0.25, step_s=5.0)
    # buckets of 5 s counted from `since`: windows 0-9, 10-19, ...; each keeps its newest
    assert [h["seq"] for h in thinned] == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]
    assert [h["label"] for h in thinned] == ["Walk"] * 5 + ["Sit"] * 5
    assert [h["seq"] for h in history(store, "pi-a", since=DAY - 0.25, step_s=5.0, limit=3)] == [79, 89, 99]
    assert len(history(store, "pi-a", since=DAY - 0.25, step_s=0.5)) == 100


def test_day_summary_is_time_per_activity_computed_by_the_database(store):
    # run1: windows every 0.5 s: Walk seq 0-5, Sit seq 6-9, a 195.5 s silence, Sit seq 10-11.
    run1 = [row("pi-a", "run1", i, DAY + 100 + i * 0.5, "Walk" if i < 6 else "Sit") for i in range(10)]
    run1 += [row("pi-a", "run1", 10, DAY + 300, "Sit"), row("pi-a", "run1", 11, DAY + 300.5, "Sit")]
    # run2 (the device restarted): Wave every 1 s; its first window is not the end of run1's last one.
    run2 = [row("pi-a", "run2", i, DAY + 400 + i, "Wave") for i in range(3)]
    outside = [
        row("pi-a", "run0", 0, DAY - 0.5, "Walk"),  # the day before
        row("pi-a", "run3", 0, DAY + 86400, "Walk"),  # the next day (the end is exclusive)
        row("pi-b", "run1", 0, DAY + 100, "Walk"),  # another device
    ]
    store.add_predictions(run1 + run2 + outside)
    got = store.summary("pi-a", DAY, DAY + 86400, gap_cap_s=2.0)
    # Walk: 6 windows lasting 0.5 s each (the next one within the cap). Sit: seq 6-8 0.5 s each; seq 9 is
    # followed by a silence over the cap (an outage), so it lasts the gap from seq 8, 0.5 s; seq 10 0.5 s;
    # seq 11 (the run's last) the gap from seq 10, 0.5 s. Wave: two 1 s gaps, and the last window 1 s.
    assert got == pytest.approx({"Walk": 3.0, "Sit": 3.0, "Wave": 3.0})
    assert list(got) == ["Sit", "Walk", "Wave"]  # most time first, ties by name
    assert store.summary("pi-a", DAY, DAY + 86400) == pytest.approx(got)  # no gap between 2 s and 5 s
    # the day before's window is the last of run0, alone: the cap; a range cuts no window short
    assert store.summary("pi-a", DAY - 1, DAY + 100.5, gap_cap_s=2.0) == pytest.approx({"Walk": 2.0 + 0.5})
    assert store.summary("pi-a", DAY + 86400 * 5, DAY + 86400 * 6) == {}
    assert store.summary("pi-b", DAY, DAY + 86400) == {"Walk": 5.0}  # one lone window: the cap
    assert store.summary("pi-b", DAY, DAY + 86400, gap_cap_s=2.0) == {"Walk": 2.0}


def test_day_summary_of_a_device_older_than_the_run_id_follows_window_ends(store):
    # no run id: two daemon runs share run '' and seq restarts; ordered by window end, not by seq
    first = [row("old-pi", "", i, DAY + 100 + i, "Walk") for i in range(4)]
    second = [row("old-pi", "", i, DAY + 200 + i, "Sit") for i in range(3)]
    store.add_predictions(first + second)
    # Walk: three 1 s gaps, then the window before the restart's 97 s gap lasts the 1 s gap before it;
    # Sit: two 1 s gaps and the last window the 1 s gap before it
    got = store.summary("old-pi", DAY, DAY + 86400, gap_cap_s=2.0)
    assert got == pytest.approx({"Walk": 4.0, "Sit": 3.0})


def test_retention_deletes_old_rows_and_forgotten_devices(db_url):
    s = open_store_url(db_url, retention_days=1.0)
    now = DAY + 10 * 86400
    try:
        s.add_predictions([row("gone", "run1", i, now - 3 * 86400 + i, received_at=now - 3 * 86400) for i in range(4)])
        s.set_status("gone", "offline", now - 3 * 86400)
        s.add_predictions([row("here", "run1", i, now - 7200 + i, received_at=now - 7200) for i in range(2)])
        s.add_predictions([row("here", "run1", 2, now - 100, received_at=now - 100)])
        s.set_status("here", "online", now - 100)
        assert s.prune(now) == 5  # 4 predictions and 1 status change of "gone"
        assert [d.device_id for d in s.devices()] == ["here"]
        assert s.counts() == {"predictions": 3, "status_changes": 1, "devices": 1, "events": 0}
        assert s.prune(now) == 0
    finally:
        s.close()


def test_open_store_uses_sqlite_at_db_path_in_wal_mode(tmp_path):
    import sqlalchemy as sa

    store = open_store(ServeConfig(db_path=tmp_path / "live.sqlite3", retention_days=7))
    try:
        assert store.backend == "sqlite" and store.retention_days == 7
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert (tmp_path / "live.sqlite3").is_file()
    finally:
        store.close()


def test_open_store_uses_the_url_when_given(postgres_url, tmp_path):
    store = open_store(ServeConfig(db_url=postgres_url, db_path=tmp_path / "unused.sqlite3"))
    try:
        assert store.backend == "postgresql"
        assert not (tmp_path / "unused.sqlite3").exists()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("postgresql+psycopg2://u@127.0.0.1/db", "psycopg 3 driver"),
        ("mysql://u@127.0.0.1/db", "only SQLite and PostgreSQL"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/nothing", "cannot connect"),
    ],
)
def test_a_bad_database_url_is_one_error_naming_it(url, message):
    with pytest.raises(StoreError, match=message) as info:
        open_store_url(url)
    assert "\n" not in str(info.value)


def test_a_missing_sqlite_folder_is_named(tmp_path):
    with pytest.raises(StoreError, match=r"--db .*the folder .*nowhere does not exist"):
        open_store(ServeConfig(db_path=tmp_path / "nowhere" / "x.sqlite3"))


def test_a_password_in_the_url_is_never_shown(postgres_url):
    import sqlalchemy as sa

    url = sa.engine.make_url(postgres_url).set(password="s3cret-pw", port=1)
    with pytest.raises(StoreError) as info:
        open_store_url(url.render_as_string(hide_password=False))
    assert "s3cret-pw" not in str(info.value)


def test_one_device_is_read_by_its_id_not_by_ids_containing_it(store):
    store.add_predictions([row(f"pi-{i}", "run1", 0, DAY + i) for i in (1, 10, 11, 100)])
    record = store.device("pi-1")
    assert record is not None and record.device_id == "pi-1"
    assert record.activity is not None and record.activity.ts == pytest.approx(DAY + 1)
    assert store.device("pi-") is None and store.device("PI-1") is None and store.device("nobody") is None
