"""Time per activity through the rollups, against a brute-force reading of the rule, on SQLite and PostgreSQL.

The rule (:mod:`edge_har.web.store`'s module doc): within a run ordered by ``(ts, seq)`` a prediction lasts
the gap to the next one when that is within the cap, else the gap from the previous one when that is,
else the cap. :func:`brute` applies it to every row in Python; the store must give the same seconds for any
range, cold, warm, and after rows arrive late, out of order or on bucket edges in buckets already rolled up.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence

import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.web import queries  # noqa: E402
from edge_har.web.store import (  # noqa: E402
    GAP_CAP_S,
    ROLLUP_BUCKET_S,
    activity_rollup,
    open_store_url,
    predictions,
    rollup_buckets,
    rollup_versions,
)

pytest_plugins = ["tests.plugins.db"]

NOW = float(round(time.time()))
BASE = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc).timestamp()  # a UTC midnight, in the past: a bucket edge
FUZZ_EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "40"))
LABELS = ["Walk", "Sit", "Wave"]


def row(device: str, run_id: str, seq: int, ts: float, label: str) -> dict:
    return {
        "device_id": device,
        "run_id": run_id,
        "seq": seq,
        "ts": ts,
        "label": label,
        "confidence": 0.75,
        "probabilities": {label: 0.75},
        "model_id": "m-1",
        "variant": "int8",
        "inference_ms": 1.0,
        "received_at": NOW,
    }


def brute(rows: Sequence[dict], device: str, start: float, end: float, cap: float = GAP_CAP_S) -> dict[str, float]:
    """Seconds per label of ``device``'s rows with ``start <= ts < end``, the rule applied row by row."""
    runs: dict[str, list[dict]] = {}
    for r in {(r["device_id"], r["run_id"], r["seq"], r["ts"]): r for r in rows}.values():  # stored once
        if r["device_id"] == device:
            runs.setdefault(r["run_id"], []).append(r)
    out: dict[str, float] = {}
    for run in runs.values():
        run.sort(key=lambda r: (r["ts"], r["seq"]))
        for i, r in enumerate(run):
            if not start <= r["ts"] < end:
                continue
            after = run[i + 1]["ts"] - r["ts"] if i + 1 < len(run) else None
            before = r["ts"] - run[i - 1]["ts"] if i else None
            if after is not None and after <= cap:
                seconds = after
            elif before is not None and before <= cap:
                seconds = before
            else:
                seconds = cap
            out[r["label"]] = out.get(r["label"], 0.0) + seconds
    return out


def empty(store) -> None:
    with store.engine.begin() as conn:
        for table in (predictions, rollup_versions, rollup_buckets, activity_rollup):
            conn.execute(sa.delete(table))


# Rows near the bucket edges of two hours around BASE + 1 day: on an edge, within the cap of one, and
# bursts at the reference stride, in three runs ('' as a device older than the run id) of two devices.
POINT = st.tuples(
    st.integers(-4, 4),
    st.sampled_from([0.0, 0.25, 0.5, 4.5, 5.0, 5.5, 300.0, 894.5, 895.0, 895.5, 899.5]),
    st.sampled_from(LABELS),
    st.sampled_from(["r1", "r2", ""]),
    st.sampled_from(["pi-a", "pi-b"]),
    st.sampled_from([1, 1, 1, 4, 12]),  # a burst of this many rows
    st.sampled_from([0.5, 1.0, 4.9, 5.0, 5.1, 7.0]),  # at this stride
)


def materialise(points: Sequence[tuple], seq0: int) -> list[dict]:
    rows = []
    seq = seq0
    for k, offset, label, run_id, device, n, stride in points:
        for j in range(n):
            rows.append(row(device, run_id, seq, BASE + 86400 + k * ROLLUP_BUCKET_S + offset + j * stride, label))
            seq += 1
    return rows


def check(store, rows: Sequence[dict], offset: int, since_shift: float, until_shift: float) -> None:
    """The range's days for pi-a, and both devices over [since, until), equal the brute force."""
    tz = dt.timezone(dt.timedelta(minutes=offset))
    midnight = dt.datetime.combine(dt.date(2026, 11, 20), dt.time(), tz).timestamp()
    since, until = midnight + since_shift, midnight + 2 * 86400 + until_shift
    for span, seconds in queries.range_summary(store, "pi-a", since, until, offset):
        assert seconds == pytest.approx(brute(rows, "pi-a", span.start, span.end), abs=1e-6), (span, offset)
    both = store.summaries(["pi-a", "pi-b"], BASE + 86400 + since_shift / 10, BASE + 86400 + until_shift)
    for device in ("pi-a", "pi-b"):
        want = brute(rows, device, BASE + 86400 + since_shift / 10, BASE + 86400 + until_shift)
        assert both[device] == pytest.approx(want, abs=1e-6), device


@settings(
    max_examples=max(10, FUZZ_EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.lists(POINT, min_size=1, max_size=12),
    later=st.lists(POINT, min_size=1, max_size=8),
    offset=st.sampled_from([-600, -7, 0, 7, 60, 330, 345, 840]),
    other=st.sampled_from([-7, 0, 7, 345]),
    since_shift=st.sampled_from([0.0, 0.25, 450.0, 900.0, 86400.0 - 2.5, 86400.0 + 900.0]),
    until_shift=st.sampled_from([0.0, -0.25, -450.0, -900.0, -3600.5]),
)
def test_property_rollup_summaries_equal_the_brute_force_rule_also_after_late_rows(
    db_url, first, later, offset, other, since_shift, until_shift
):
    store = open_store_url(db_url)
    try:
        empty(store)
        rows = materialise(first, 0)
        store.add_predictions(rows)
        check(store, rows, offset, since_shift, until_shift)  # cold: computes and stores the buckets
        check(store, rows, offset, since_shift, until_shift)  # warm: from the rollups
        check(store, rows, other, since_shift, until_shift)  # other day edges over the same rollups
        late = materialise(later, 10_000)
        late.reverse()  # out of order, into buckets already rolled up, some on their edges
        for batch in (late[::2], late[1::2]):
            store.add_predictions(batch)
        rows += late
        check(store, rows, offset, since_shift, until_shift)
        check(store, rows, offset, since_shift, until_shift)
    finally:
        store.close()


def test_a_second_summary_over_the_same_range_reads_only_rollups(db_url):
    store = open_store_url(db_url)
    try:
        start = BASE - 30 * 86400
        # 30 days, a burst of 20 windows at 1 s every hour, one of them across each UTC midnight
        rows = [
            row("pi-1", "r1", h * 20 + i, start + h * 3600 - 10 + i, LABELS[h % 3])
            for h in range(30 * 24)
            for i in range(20)
        ]
        store.add_predictions(rows)
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        cold = queries.range_summary(store, "pi-1", start, BASE, 0)
        assert len(cold) == 30 and sum(len(s) for s in statements if "FROM predictions" in s) > 0
        statements.clear()
        warm = queries.range_summary(store, "pi-1", start, BASE, 0)
        for (_, w), (_, c) in zip(warm, cold):
            assert w == pytest.approx(c)
        assert not [s for s in statements if "predictions" in s]  # whole days: every bucket from the rollups
        assert len(statements) == 2  # the versions, then the rollups
        for span, seconds in warm[:2]:
            assert seconds == pytest.approx(brute(rows, "pi-1", span.start, span.end))

        # a day edge inside a bucket (UTC+00:07): only the rows near the day edges are read again
        queries.range_summary(store, "pi-1", start + 420, BASE + 420, 7)
        read: list[int] = []
        sa.event.listen(
            store.engine,
            "after_cursor_execute",
            lambda c, cur, s, *a: read.append(cur.rowcount if "predictions" in s else 0),
        )
        statements.clear()
        days = queries.range_summary(store, "pi-1", start + 420, BASE + 420, 7)
        assert len([s for s in statements if "FROM predictions" in s]) == 1
        for span, seconds in days[:3]:
            assert seconds == pytest.approx(brute(rows, "pi-1", span.start, span.end))

        # one new row leaves its bucket's version ahead: that bucket alone is computed again
        store.add_predictions([row("pi-1", "r1", 10**6, start + 86400 + 3.0, "Wave")])
        statements.clear()
        again = queries.range_summary(store, "pi-1", start, BASE, 0)
        assert again[1][1] == pytest.approx(
            brute(
                [*rows, row("pi-1", "r1", 10**6, start + 86400 + 3.0, "Wave")],
                "pi-1",
                again[1][0].start,
                again[1][0].end,
            )
        )
        assert len([s for s in statements if "FROM predictions" in s]) == 1
    finally:
        store.close()


def test_a_batch_bumps_the_versions_in_one_statement_and_prune_drops_old_rollups(db_url):
    store = open_store_url(db_url, retention_days=1.0)
    try:
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        edge = BASE + 900
        batch = [row("pi-1", "r1", i, edge - 2.0 + i, "Walk") for i in range(4)]  # across a bucket edge
        batch += [row("pi-2", "r1", 0, edge + 400.0, "Sit")]
        store.add_predictions(batch)
        assert len([s for s in statements if "rollup_versions" in s]) == 1
        with store.engine.connect() as conn:
            got = {(d, int(b)): int(v) for d, b, v in conn.execute(sa.select(rollup_versions))}
        k = int(edge // 900)
        assert got == {("pi-1", k - 1): 1, ("pi-1", k): 1, ("pi-2", k): 1}
        store.add_predictions(batch)  # re-delivered: nothing new, nothing bumped
        store.add_predictions([row("pi-2", "r1", 1, edge + 401.0, "Sit")])
        with store.engine.connect() as conn:
            got = {(d, int(b)): int(v) for d, b, v in conn.execute(sa.select(rollup_versions))}
        assert got == {("pi-1", k - 1): 1, ("pi-1", k): 1, ("pi-2", k): 2}

        assert store.summaries(["pi-1", "pi-2"], BASE, BASE + 1800) == {"pi-1": {"Walk": 4.0}, "pi-2": {"Sit": 2.0}}
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(rollup_buckets)).scalar() == 4
        store.prune(now=BASE + 5 * 86400)
        with store.engine.connect() as conn:
            for table in (rollup_versions, rollup_buckets, activity_rollup):
                assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    finally:
        store.close()


def test_a_row_committed_while_a_summary_computes_is_counted_by_the_next_one(db_url):
    """The race the versions close: a row lands after the reader read the versions and the rows, before it stores."""
    store, writer = open_store_url(db_url), open_store_url(db_url)
    try:
        rows = [row("pi-1", "r1", i, BASE + 100 + i, "Walk") for i in range(10)]
        store.add_predictions(rows)
        late = [row("pi-1", "r1", 100, BASE + 110, "Sit"), row("pi-1", "r1", 101, BASE + 900 + 2, "Sit")]
        written: list[bool] = []

        def write_in_between(conn, cursor, statement, *args) -> None:
            if "near_rows" in statement and not written:  # after the rows were read, before the store
                written.append(True)
                writer.add_predictions(late)  # its own connection and transaction, committed now

        sa.event.listen(store.engine, "after_cursor_execute", write_in_between)
        store.summaries(["pi-1"], BASE, BASE + 1800)  # stores buckets with the versions read before the row
        sa.event.remove(store.engine, "after_cursor_execute", write_in_between)
        assert written
        want = brute([*rows, *late], "pi-1", BASE, BASE + 1800)
        assert store.summary("pi-1", BASE, BASE + 1800) == pytest.approx(want)
        assert store.summary("pi-1", BASE, BASE + 1800) == pytest.approx(want)  # from the rollups now
        # Walk: 9 gaps and the 1 s to the Sit row; Sit: the gap from the last Walk, and a lone window
        assert want == pytest.approx({"Walk": 10.0, "Sit": 1.0 + GAP_CAP_S})
    finally:
        writer.close()
        store.close()


def test_prune_of_a_row_whose_clock_is_ahead_leaves_no_stale_rollup(db_url):
    """Retention goes by arrival: a row of a device whose clock is ahead leaves a bucket that stays rolled up."""
    store = open_store_url(db_url, retention_days=1.0)
    try:
        ahead = [row("pi-1", "r1", i, BASE + 100 + i, "Walk") for i in range(5)]
        for r in ahead:
            r["received_at"] = BASE - 10 * 86400  # arrived long ago, ts says later
        kept = [row("pi-1", "r1", 10 + i, BASE + 200 + i, "Sit") for i in range(3)]
        store.add_predictions(ahead + kept)
        assert store.summary("pi-1", BASE, BASE + 900) == pytest.approx({"Walk": 5.0, "Sit": 3.0})
        store.prune(now=BASE)  # cutoff BASE - 1 day: the Walk rows go, their bucket (after the cutoff) stays
        assert store.summary("pi-1", BASE, BASE + 900) == pytest.approx({"Sit": 3.0})
    finally:
        store.close()


def test_the_background_pass_computes_closed_buckets_so_the_first_page_reads_only_rollups(db_url):
    from edge_har.web.roller import Roller

    store = open_store_url(db_url)
    try:
        empty(store)
        start = BASE - 7 * 86400
        rows = [
            row("pi-1", "r1", h * 10 + i, start + h * 3600 + i, LABELS[h % 3]) for h in range(7 * 24) for i in range(10)
        ]
        rows += [row("pi-2", "r1", i, start + 3 * 86400 + i * 2.0, "Sit") for i in range(50)]
        store.add_predictions(rows)
        roller = Roller(store)
        assert roller.run_once() > 0 and roller.errors == 0
        assert roller.run_once() == 0  # nothing changed since: nothing to compute
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        end = start + (7 * 24 - 1) * 3600 + ROLLUP_BUCKET_S  # the end of the bucket of the last rows
        days = queries.range_summary(store, "pi-1", start, end, 0)
        assert not [s for s in statements if "predictions" in s]  # the first page: every bucket already rolled up
        for span, seconds in days:
            assert seconds == pytest.approx(brute(rows, "pi-1", span.start, span.end))
        assert store.summaries(["pi-2"], start, BASE)["pi-2"] == pytest.approx(brute(rows, "pi-2", start, BASE))

        # a late row bumps its bucket; the next pass computes that bucket alone
        late = row("pi-1", "r1", 10**6, start + 3600 + 10.0, "Wave")
        store.add_predictions([late])
        assert roller.run_once() == 1
        statements.clear()
        days = queries.range_summary(store, "pi-1", start, end, 0)
        assert not [s for s in statements if "predictions" in s]
        assert days[0][1] == pytest.approx(brute([*rows, late], "pi-1", days[0][0].start, days[0][0].end))

        # the open bucket (now) is left to the readers: its rows are still coming
        store.add_predictions([row("pi-1", "r1", 10**6 + 1, time.time() - 1.0, "Sit")])
        assert roller.run_once() == 0
    finally:
        store.close()


def test_a_background_pass_against_a_database_that_went_away_is_counted_and_survived(tmp_path):
    db = tmp_path / "gone.db"
    store = open_store_url(f"sqlite:///{db}")
    try:
        store.add_predictions([row("pi-1", "r1", 0, BASE, "Sit")])
        from edge_har.web.roller import Roller

        roller = Roller(store)
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE rollup_versions"))
        assert roller.run_once() == 0 and roller.errors == 1
    finally:
        store.close()
