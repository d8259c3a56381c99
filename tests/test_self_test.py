"""A bundle's self-test on the real tiny bundle: convert stores windows and each variant's outputs, the
device reproduces them on load, and refuses a bundle whose model does not (exit 78, one line naming
``selftest.npz``). The archive is outside input: any bytes under a matching sha256 are refused in one line.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.bundle import Bundle
from edge_har.core.self_test import SELF_TEST_FILE, TOLERANCE, SelfTestError, pick_windows, run_self_test
from edge_har.device.config import load_config
from edge_har.device.daemon_cli import validate_files
from edge_har.device.runtime import Runtime
from edge_har.device.startup import run_startup_checks
from tests.test_startup_checks import edit_json, write_config


def rewrite_archive(bundle: Path, arrays: dict[str, np.ndarray] | None = None, raw: bytes | None = None) -> None:
    """Replace selftest.npz and record its new sha256 and size, as a writer would (the file is then 'genuine')."""
    path = bundle / SELF_TEST_FILE
    if raw is None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        raw = buffer.getvalue()
    path.write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    edit_json(bundle, lambda d: d["self_test"].update(sha256=digest, size_bytes=len(raw)))


def test_convert_stores_a_self_test_every_variant_reproduces_on_load(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    entry = bundle.self_test
    assert entry is not None and entry["file"] == SELF_TEST_FILE and entry["windows"] == 8
    assert entry["tolerance"] == {name: TOLERANCE[name] for name in ("float32", "dynamic_range", "int8")}
    assert bundle.verify() == []  # its sha256 and size are what bundle.json records
    with np.load(tiny_bundle / SELF_TEST_FILE) as npz:
        x = npz["x"]
        assert x.shape == (8, 64, 3) and x.dtype == np.float32
        classes = {int(npz["p_float32"][i].argmax()) for i in range(8)}
    assert len(classes) >= 2  # windows of several classes, not eight of one
    for variant in ("float32", "dynamic_range", "int8"):
        runtime = Runtime.load(tiny_bundle, variant)
        result = runtime.self_test
        assert result is not None and result.windows == 8 and result.variant == variant
        assert result.max_abs_diff <= 1e-5 and result.labels_agree == 8  # the same runtime and CPU as convert


def test_a_model_that_does_not_reproduce_the_workstation_is_refused_at_start(
    tiny_bundle_copy, tiny_dataset_dir, tmp_path
):
    with np.load(tiny_bundle_copy / SELF_TEST_FILE) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["p_int8"] = arrays["p_int8"][:, ::-1].copy()  # what a runtime computing the model otherwise gives
    rewrite_archive(tiny_bundle_copy, arrays)
    with pytest.raises(SelfTestError, match="variant int8 gives probabilities up to"):
        Runtime.load(tiny_bundle_copy, "int8")
    assert Runtime.load(tiny_bundle_copy, "float32").self_test is not None  # the other variants still run

    config = write_config(tmp_path / "config.yaml", tiny_bundle_copy, tiny_dataset_dir)
    err = io.StringIO()
    assert validate_files([config], out=io.StringIO(), err=err) == 1
    (line,) = err.getvalue().strip().splitlines()
    assert str(tiny_bundle_copy / SELF_TEST_FILE) in line and "does not compute this model" in line, line


def test_a_damaged_self_test_file_is_named(tiny_bundle_copy, tiny_dataset_dir, tmp_path):
    path = tiny_bundle_copy / SELF_TEST_FILE
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    assert any(p.startswith("self_test.sha256") for p in Bundle.load(tiny_bundle_copy).verify())
    result = run_startup_checks(load_config(write_config(tmp_path / "c.yaml", tiny_bundle_copy, tiny_dataset_dir)))
    assert len(result.errors) == 1 and "selftest.npz: sha256 does not match bundle.json" in result.errors[0]


def test_a_bundle_without_a_self_test_still_runs(tiny_bundle_copy):
    edit_json(tiny_bundle_copy, lambda d: d.pop("self_test"))
    assert Runtime.load(tiny_bundle_copy, "int8").self_test is None


def test_pick_windows_takes_each_class_in_turn():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 0, 2])
    assert list(pick_windows(y, 5)) == [0, 1, 4, 5, 6]
    assert list(pick_windows(np.array([3, 3]), 8)) == [0, 1]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    raw=st.binary(max_size=400),
    arrays=st.none()
    | st.fixed_dictionaries(
        {
            "x": st.sampled_from(
                [np.zeros((2, 64, 3), np.float32), np.zeros((0, 64, 3), np.float32), np.zeros(3, np.float64)]
            ),
            "p_int8": st.sampled_from(
                [np.zeros((2, 3), np.float32), np.ones((2, 4), np.float32), np.zeros(2, np.float32)]
            ),
        }
    ),
)
def test_any_archive_under_a_matching_sha256_is_run_or_refused_in_one_line(tiny_bundle, tmp_path_factory, raw, arrays):
    import shutil

    bundle = tmp_path_factory.mktemp("st") / "b"
    shutil.copytree(tiny_bundle, bundle)
    rewrite_archive(bundle, arrays=arrays, raw=None if arrays is not None else raw)
    entry = json.loads((bundle / "bundle.json").read_text())["self_test"]
    try:
        result = run_self_test(bundle, entry, "int8", lambda w: np.array([0.0, 0.0, 0.0], np.float32))
    except SelfTestError as exc:
        assert str(bundle / SELF_TEST_FILE) in str(exc) and "\n" not in str(exc)
        return
    assert result is None or result.max_abs_diff <= result.tolerance
