"""The Predict reply's segments and headline: runs of one label, and the majority the page puts first.

The segment merge is checked on any sequence of windows (hypothesis: overlapping or not, any labels),
and the whole reply on the tiny bundle through the app: the segments tile the recording in order,
their window counts add up to the windows, each segment's label and confidence are its windows',
and the headline is the label most windows say, with its count, as the device's runtime says it.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from edge_har.core.recordings import read_samples  # noqa: E402
from edge_har.device.runtime import Runtime  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.predict import LoadedModel, WindowPrediction, segments  # noqa: E402


def window(i: int, start: float, length: float, label: str, confidence: float) -> WindowPrediction:
    return WindowPrediction(
        index=i,
        start_s=start,
        end_s=start + length,
        label=label,
        confidence=confidence,
        probabilities={label: confidence},
        latency_ms=0.5,
    )


def assert_tiles(segs: list, windows: list[WindowPrediction]) -> None:
    """The segments cover the recording once, in order, and merge exactly the runs of one label."""
    assert segs[0].start_s == windows[0].start_s and segs[-1].end_s == windows[-1].end_s
    assert all(a.end_s == b.start_s for a, b in zip(segs, segs[1:]))
    # duration_s is rounded to the microsecond (the reply's JSON): equal within that, not within 1e-6 relative
    assert all(s.duration_s >= 0 and s.duration_s == pytest.approx(s.end_s - s.start_s, abs=1e-6) for s in segs)
    assert sum(s.windows for s in segs) == len(windows)
    assert all(a.label != b.label for a, b in zip(segs, segs[1:]))
    expanded = [s.label for s in segs for _ in range(s.windows)]
    assert expanded == [w.label for w in windows]
    for s in segs:
        mine = windows[s.first_window : s.first_window + s.windows]
        assert s.mean_confidence == pytest.approx(sum(w.confidence for w in mine) / len(mine))


@settings(max_examples=60, deadline=None)
@example(labels=["Sit"], stride=1.0, length=0.3359375, confidences=[0.0] * 40)  # rounds 0.3359375 to 0.335938
@given(
    labels=st.lists(st.sampled_from(["Sit", "Walk", "Wave", "unknown"]), min_size=1, max_size=40),
    stride=st.floats(0.05, 4.0),
    length=st.floats(0.05, 8.0),
    confidences=st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40),
)
def test_segments_tile_any_run_of_windows(labels, stride, length, confidences):
    windows = [window(i, round(i * stride, 6), length, label, confidences[i]) for i, label in enumerate(labels)]
    assert_tiles(segments(windows), windows)


def test_segment_edges_fall_between_overlapping_windows():
    """2 s windows every 1 s: Sit, Sit, Walk -> the edge is halfway between the centres of windows 1 and 2."""
    windows = [window(0, 0.0, 2.0, "Sit", 0.9), window(1, 1.0, 2.0, "Sit", 0.7), window(2, 2.0, 2.0, "Walk", 0.8)]
    sit, walk = segments(windows)
    assert (sit.label, sit.start_s, sit.end_s, sit.windows, sit.mean_confidence) == ("Sit", 0.0, 2.5, 2, 0.8)
    assert (walk.label, walk.start_s, walk.end_s, walk.windows, walk.first_window) == ("Walk", 2.5, 4.0, 1, 2)


def test_the_reply_has_segments_and_the_majority_headline(tiny_bundle, tiny_dataset_dir, tmp_path):
    """A walk, sit, walk, wave day through POST /api/predict, against the device's runtime on the same file."""
    loaded = LoadedModel.load(tiny_bundle, "int8")
    day = tmp_path / "walk-sit-walk-wave.txt"
    parts = [
        sorted((tiny_dataset_dir / c).glob("*.txt"))[i] for c, i in (("Walk", 0), ("Sit", 0), ("Walk", 1), ("Wave", 0))
    ]
    day.write_text("".join(p.read_text() for p in parts))
    device = [p.raw_label for p in Runtime.load(tiny_bundle, "int8", smoothing_window=1).run_samples(read_samples(day))]
    cfg = ServeConfig(bundles=(tiny_bundle,), db_path=tmp_path / "db.sqlite3")
    with TestClient(create_app(cfg, [loaded])) as client:
        reply = client.post("/api/predict", files={"file": (day.name, day.read_bytes(), "text/plain")})
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert reply.status_code == 200, reply.text
    body = reply.json()
    windows = [WindowPrediction(**w) for w in body["windows"]]
    assert [w.label for w in windows] == device
    segs = segments(windows)
    assert [s.model_dump() for s in segs] == body["segments"]
    assert_tiles(segs, windows)
    assert len(segs) >= 3  # the day changes activity
    majority, n = Counter(device).most_common(1)[0]
    assert body["label"] == body["summary"]["majority_label"] == majority
    assert body["summary"]["majority_windows"] == n and body["summary"]["windows"] == len(device)
    assert {"segments"} <= set(schema["PredictResponse"]["properties"])
    assert {"label", "start_s", "end_s", "duration_s", "windows", "mean_confidence"} <= set(
        schema["Segment"]["properties"]
    )
    assert "majority_windows" in schema["Summary"]["properties"]
