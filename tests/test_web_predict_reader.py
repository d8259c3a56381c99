"""``edge-har serve``'s upload is read the way training read the data set.

A raw file-name-labelled set (nine columns at 200 Hz) is converted with a column choice, a scale
and resampling to 50 Hz; one of its raw files, uploaded to ``POST /api/predict`` of the real app
with no form fields, gives the windows ``edge-har evaluate`` cuts from it (bit for bit) and the
same probabilities. The bundle's reader record (``provenance.dataset.reader``) supplies the
columns and the files' rate; the bounds on rate and windows still hold for a rate taken from it;
a bundle without the record reads uploads as it always did (every column, the model's rate).
Property test: arbitrary widths, lengths and junk against the record's column choice give a
200 or a one-line 4xx naming the file, never a 500; ``EDGE_HAR_FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.device.runtime import Windowing  # noqa: E402
from edge_har.device.sources.base import Chunk  # noqa: E402
from edge_har.web import predict as predict_module  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.predict import MAX_UPSAMPLE, LoadedModel, read_recording  # noqa: E402
from tests.plugins.raw_set import (  # noqa: E402
    COLUMNS,
    MODEL_RATE,
    RATE,
    STRIDE,
    WINDOW,
    convert_raw_set,
    write_raw_set,
)

pytestmark = pytest.mark.slow  # a real conversion (about 30 s on 2 cores, TensorFlow's import included)

FUZZ_EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "40"))
UPLOADED = "s2/walk_1.csv"  # 6 s at 200 Hz: 300 samples at 50 Hz, 8 windows of 64 every 32


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, Path]:
    """(the raw data set, the bundle converted from it: columns 3..5, scale 0.01, 200 -> 50 Hz)."""
    base = tmp_path_factory.mktemp("serve-reader")
    data = write_raw_set(base / "raw")
    return data, convert_raw_set(data, base / "bundle", epochs=2)


@pytest.fixture(scope="module")
def loaded(raw) -> LoadedModel:
    return LoadedModel.load(raw[1], "float32")


def client_for(model: LoadedModel, tmp: Path) -> TestClient:
    cfg = ServeConfig(bundles=(model.bundle.root,), db_path=tmp / "db.sqlite3")
    return TestClient(create_app(cfg, [model]), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(loaded, tmp_path_factory) -> Any:
    with client_for(loaded, tmp_path_factory.mktemp("db")) as c:
        yield c


def post(client: TestClient, name: str, body: bytes, **data: str) -> Any:
    return client.post("/api/predict", files={"file": (name, body, "text/csv")}, data=data)


def evaluate_of(bundle_dir: Path, data: Path, source: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """evaluate's own windows (split all) of the recording read from ``source``, and their probabilities."""
    from edge_har.convert.evaluate import bundle_windows_grouped, load_bundle, predict_probabilities
    from edge_har.core.formats import load_recorded

    bundle = load_bundle(bundle_dir)
    dataset = load_recorded(data, bundle.data["provenance"]["dataset"]["reader"])
    x, _, groups, _ = bundle_windows_grouped(bundle, dataset, split="all")
    (index,) = [i for i, r in enumerate(dataset.recordings) if Path(r.source) == source]
    mine = x[groups == index]
    return mine, predict_probabilities(bundle.load_model("float32"), mine, progress=False), list(bundle.labels)


def one_line_4xx(reply: Any, status: int, *words: str) -> str:
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for word in words:
        assert word in detail, detail
    return detail


def test_a_raw_training_file_predicts_what_evaluate_predicts(raw, loaded, client):
    data, bundle_dir = raw
    source = data / UPLOADED
    expected_x, expected_p, labels = evaluate_of(bundle_dir, data, source)
    assert len(expected_x) == 8

    # The windows serve cuts: its reader, then the runtime's windowing at the rate it defaults to.
    samples = read_recording(source, source.name, 3, loaded.reader)
    assert samples.shape == (int(6 * RATE), 3)
    assert loaded.recording_rate_hz == RATE
    windowing = Windowing(loaded.bundle.preprocessing, loaded.recording_rate_hz)
    got = [w.data for w in windowing.push(Chunk(samples, 0.0, 0.0, segment_start=True))]
    assert np.stack(got).astype(np.float32).tobytes() == expected_x.astype(np.float32).tobytes()

    # And the API itself, with no form field but the file.
    reply = post(client, source.name, source.read_bytes())
    assert reply.status_code == 200, reply.text
    windows = reply.json()["windows"]
    assert len(windows) == len(expected_p)
    for w, p in zip(windows, expected_p):
        assert [w["probabilities"][label] for label in labels] == [float(v) for v in p]
        assert w["label"] == labels[int(np.argmax(p))]
    assert [w["start_s"] for w in windows[:2]] == [0.0, STRIDE / MODEL_RATE]


def test_info_says_how_a_recording_is_read(client):
    (b,) = client.get("/api/info").json()["bundles"]
    assert b["recording_rate_hz"] == RATE and b["recording_columns"] == [str(c) for c in COLUMNS]
    assert b["preprocessing"]["sample_rate_hz"] == MODEL_RATE


def test_a_file_of_the_chosen_channels_alone_is_taken_as_it_is(raw, client):
    data, _ = raw
    rows = np.loadtxt(data / UPLOADED, delimiter=",")
    whole = post(client, "w9.csv", (data / UPLOADED).read_bytes()).json()
    three = rows[:, list(COLUMNS)]
    body = "\n".join(",".join(f"{v:g}" for v in row) for row in three).encode()
    alone = post(client, "w3.csv", body)
    assert alone.status_code == 200, alone.text
    assert [w["probabilities"] for w in alone.json()["windows"]] == [w["probabilities"] for w in whole["windows"]]
    assert len(whole["windows"]) == 8


def test_sample_rate_hz_still_overrides_and_is_bounded(raw, client):
    data, _ = raw
    body = (data / UPLOADED).read_bytes()
    at_model_rate = post(client, "w.csv", body, sample_rate_hz=f"{MODEL_RATE:g}")
    assert at_model_rate.status_code == 200
    assert len(at_model_rate.json()["windows"]) == (int(6 * RATE) - WINDOW) // STRIDE + 1  # no resampling
    one_line_4xx(
        post(client, "w.csv", body, sample_rate_hz=f"{MODEL_RATE / MAX_UPSAMPLE / 2:g}"), 422, "sample_rate_hz"
    )


def test_too_few_columns_for_the_choice_is_one_line_naming_the_file(client):
    body = b"1,2,3,4\n" * 400
    detail = one_line_4xx(post(client, "four.csv", body), 422, "four.csv", "4 columns", "3,4,5")
    assert "3 channels" in detail


def bundle_copy(raw: tuple[Path, Path], tmp: Path, edit: Any) -> Path:
    copy = tmp / "bundle"
    shutil.copytree(raw[1], copy)
    doc = json.loads((copy / "bundle.json").read_text())
    edit(doc["provenance"]["dataset"])
    (copy / "bundle.json").write_text(json.dumps(doc))
    return copy


def test_a_bundle_without_a_reader_record_reads_as_before(raw, tmp_path):
    """Every column, at the model's rate: the nine-column file is refused as it always was."""
    data, _ = raw
    copy = bundle_copy(raw, tmp_path, lambda d: d.pop("reader"))
    model = LoadedModel.load(copy, "float32")
    assert model.reader is None and model.recording_rate_hz is None
    with client_for(model, tmp_path) as c:
        one_line_4xx(post(c, "w.csv", (data / UPLOADED).read_bytes()), 422, "w.csv", "9 columns", "3 channels")
        three = np.loadtxt(data / UPLOADED, delimiter=",")[:, list(COLUMNS)]
        body = "\n".join(",".join(f"{v:g}" for v in row) for row in three).encode()
        reply = post(c, "w3.csv", body)
        assert reply.status_code == 200
        assert len(reply.json()["windows"]) == (int(6 * RATE) - WINDOW) // STRIDE + 1  # at the model's rate
        assert c.get("/api/info").json()["bundles"][0]["recording_rate_hz"] == MODEL_RATE


def test_a_recorded_rate_below_the_upsample_bound_is_refused_naming_it(raw, tmp_path):
    data, _ = raw
    low = MODEL_RATE / MAX_UPSAMPLE / 2

    def edit(d: dict) -> None:
        d["reader"]["options"]["sample_rate"] = low

    model = LoadedModel.load(bundle_copy(raw, tmp_path, edit), "float32")
    with client_for(model, tmp_path) as c:
        one_line_4xx(post(c, "w.csv", (data / UPLOADED).read_bytes()), 422, "sample_rate_hz", "training files")
        assert post(c, "w.csv", (data / UPLOADED).read_bytes(), sample_rate_hz="200").status_code == 200


def test_skip_bad_in_the_record_skips_what_training_skipped(raw, client, tmp_path):
    data, _ = raw
    lines = (data / UPLOADED).read_text().splitlines()
    junk = "\n".join(lines[:100] + ["3,4,oops,5"] + lines[100:]).encode()
    one_line_4xx(post(client, "junk.csv", junk), 422, "junk.csv", "101")  # the record says nothing: refused

    def edit(d: dict) -> None:
        d["reader"]["options"]["skip_bad"] = True

    model = LoadedModel.load(bundle_copy(raw, tmp_path, edit), "float32")
    with client_for(model, tmp_path) as c:
        skipped = post(c, "junk.csv", junk)
        clean = post(c, "clean.csv", (data / UPLOADED).read_bytes())
        assert skipped.status_code == clean.status_code == 200, skipped.text
        assert [w["probabilities"] for w in skipped.json()["windows"]] == [
            w["probabilities"] for w in clean.json()["windows"]
        ]


def test_timestamped_training_files_take_just_the_channels(raw, tmp_path):
    """A timestamp column shifts the indices the record's columns name: no column is picked."""
    data, _ = raw

    def edit(d: dict) -> None:
        d["reader"]["options"]["timestamp_column"] = "t"
        d["sample_rate_hz"] = 100.0  # the rate training resampled the files to

    model = LoadedModel.load(bundle_copy(raw, tmp_path, edit), "float32")
    assert model.timed and model.recording_rate_hz == 100.0
    with client_for(model, tmp_path) as c:
        one_line_4xx(post(c, "w.csv", (data / UPLOADED).read_bytes()), 422, "w.csv", "9 columns", "timestamp")
        three = np.loadtxt(data / UPLOADED, delimiter=",")[:, list(COLUMNS)]
        body = "\n".join(",".join(f"{v:g}" for v in row) for row in three).encode()
        reply = post(c, "w3.csv", body)
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["windows"]) == (int(6 * RATE) // 2 - WINDOW) // STRIDE + 1  # 1200 at 100 -> 600


def test_the_window_count_uses_the_recorded_rate(raw, client, monkeypatch):
    """8 windows at the files' 200 Hz pass a bound of 8; at the model's rate the same file would be 36."""
    data, _ = raw
    body = (data / UPLOADED).read_bytes()
    monkeypatch.setattr(predict_module, "MAX_WINDOWS", 8)
    assert post(client, "w.csv", body).status_code == 200
    monkeypatch.setattr(predict_module, "MAX_WINDOWS", 7)
    one_line_4xx(post(client, "w.csv", body), 413, "8 windows")


JUNK = st.sampled_from(["", "x", "nan", "1e999", ";", "  ", "-", "0x10", "1,,2"])


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 12),
    rows=st.integers(0, 400),
    junk=st.lists(st.tuples(st.integers(0, 399), JUNK), max_size=3),
    header=st.booleans(),
    rate=st.sampled_from([None, "50", "200", "3.125", "1"]),
)
def test_any_recording_is_a_200_or_one_line_4xx(client, width, rows, junk, header, rate):
    rng = np.random.default_rng(rows * 13 + width)
    lines = [",".join(str(int(v)) for v in rng.integers(-500, 500, width)) for _ in range(rows)]
    for at, text in junk:
        if at < len(lines):
            lines[at] = text
    if header:
        lines.insert(0, ",".join(f"c{i}" for i in range(width)))
    fields = {} if rate is None else {"sample_rate_hz": rate}
    reply = post(client, "fuzz.csv", "\n".join(lines).encode(), **fields)
    assert reply.status_code in (200, 413, 422), reply.text
    if reply.status_code == 200:
        assert width in (3,) or width > max(COLUMNS)
    else:
        detail = reply.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and ("fuzz.csv" in detail or "sample_rate_hz" in detail)
