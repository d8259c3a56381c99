"""Property-based (hypothesis): whatever bundle.json holds, loading it either works or raises a
BundleError (an EdgeHarError) whose message starts with the file, never another exception.

Three targets, counts in EXAMPLES: any JSON document; one mutation of the real tiny bundle's
bundle.json (a value at any key path replaced by any JSON value, huge numbers included, or the
key deleted; or two mutations at once); and raw bytes. A bundle that loads must also verify
(its files' sizes and sha256s) without raising, and the sensor runtime's load (the models and
their checks against labels and preprocessing) works or raises an EdgeHarError naming the bundle. Mutations pick half their key paths among the
keys the device reads (see ``key_paths``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.bundle import BUNDLE_FILE, Bundle, BundleError
from edge_har.core.errors import EdgeHarError
from edge_har.device.runtime import Runtime

EXAMPLES = {"any_json": 200, "mutation": 300, "two_mutations": 150, "bytes": 100}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["int8", "model_int8.tflite", "../x", "/etc/passwd", "", "sensor", "video", "a" * 64])
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fuzz_dir(tiny_bundle, tmp_path_factory) -> Path:
    """A private copy of the tiny bundle (its .tflite files too, so verify has real files to hash)."""
    return Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("fuzz") / "bundle"))


@pytest.fixture(scope="module")
def valid_doc(tiny_bundle) -> dict[str, Any]:
    return json.loads((tiny_bundle / BUNDLE_FILE).read_text())


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON document (dict keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, prefix + (i,))
    return out


RECORD_ONLY = {
    "metrics",
    "training",
    "provenance",
    "converter",
    "ops",
    "float_ops",
    "conversion_seconds",
    "full_integer",
}


def key_paths(doc: Any) -> st.SearchStrategy[tuple]:
    """Half the draws from the keys the device reads (a fifth of the ~450 paths; the rest is
    metrics, converter settings and provenance, which it carries but does not read)."""
    every = paths(doc)
    read = [p for p in every if not RECORD_ONLY.intersection(k for k in p if isinstance(k, str))]
    return st.sampled_from(read) | st.sampled_from(every)


def mutate(doc: Any, path: tuple, value: Any, delete: bool) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


def load_or_refuse(root: Path, content: bytes) -> None:
    """The property: loads (and verifies) or raises BundleError naming the file; nothing else."""
    file = root / BUNDLE_FILE
    file.write_bytes(content)
    try:
        bundle = Bundle.load(root)
    except BundleError as exc:
        assert str(exc).startswith(f"{file}: "), str(exc)
        assert "\n" not in str(exc)
        return
    problems = bundle.verify()
    assert all(isinstance(p, str) for p in problems)
    assert bundle.variant().name in bundle.variants and len(bundle.labels) >= 1
    if bundle.kind == "sensor":  # and the runtime's load-time checks of the model against it
        try:
            Runtime.load(root)
        except EdgeHarError as exc:
            assert str(root) in str(exc), str(exc)


def _settings(target: str) -> Any:
    return settings(
        max_examples=EXAMPLES[target],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@_settings("any_json")
@given(doc=JSON)
def test_any_json_document(fuzz_dir, doc):
    load_or_refuse(fuzz_dir, json.dumps(doc).encode())


@_settings("mutation")
@given(data=st.data(), value=JSON, delete=st.booleans())
def test_one_mutation_of_a_real_bundle_json(fuzz_dir, valid_doc, data, value, delete):
    doc = json.loads(json.dumps(valid_doc))
    path = data.draw(key_paths(doc))
    mutate(doc, path, value, delete and isinstance(path[-1], str))
    load_or_refuse(fuzz_dir, json.dumps(doc).encode())


@_settings("two_mutations")
@given(data=st.data(), values=st.lists(JSON, min_size=2, max_size=2))
def test_two_mutations_of_a_real_bundle_json(fuzz_dir, valid_doc, data, values):
    doc = json.loads(json.dumps(valid_doc))
    for value in values:
        path = data.draw(key_paths(doc))
        mutate(doc, path, value, delete=False)
    load_or_refuse(fuzz_dir, json.dumps(doc).encode())


@_settings("bytes")
@given(content=st.binary(max_size=2000) | st.builds(lambda b: b'{"schema_version": 1, ' + b, st.binary(max_size=200)))
def test_any_bytes(fuzz_dir, content):
    load_or_refuse(fuzz_dir, content)


def test_the_fuzzed_directory_still_holds_the_untouched_bundle(fuzz_dir, valid_doc):
    """The property's 'it loads' branch is reached: the real document loads and verifies clean."""
    (fuzz_dir / BUNDLE_FILE).write_text(json.dumps(valid_doc))
    assert Bundle.load(fuzz_dir).verify() == []
