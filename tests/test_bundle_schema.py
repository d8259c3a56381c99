"""bundle.json validated as a whole (pydantic): a damaged value is a BundleError naming the file
and the key path, never a traceback; a newer schema is refused with that reason alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from edge_har.convert import export
from edge_har.core.bundle import BUNDLE_FILE, SCHEMA_VERSION, Bundle, BundleError
from edge_har.core.errors import EdgeHarError


def edit(bundle: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Apply ``change`` to the copy's bundle.json; returns the file."""
    path = bundle / BUNDLE_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[key]
        del node[last]

    return change


# (change, the key path the message must name, a word of the reason)
DAMAGE = [
    (_set("variants.int8.file", None), "variants.int8.file", "must be a string (got None)"),
    (_set("variants.int8.size_bytes", "big"), "variants.int8.size_bytes", "must be an integer (got 'big')"),
    (_set("variants.int8.size_bytes", -1), "variants.int8.size_bytes", "greater than or equal to 0"),
    (_set("variants.int8.size_bytes", 10**40), "variants.int8.size_bytes", "less than or equal"),
    (_set("variants.int8.sha256", "abc"), "variants.int8.sha256", "pattern"),
    (_set("variants.int8.file", "../../etc/passwd"), "variants.int8.file", "inside the bundle folder"),
    (_set("variants.int8.file", "/etc/passwd"), "variants.int8.file", "inside the bundle folder"),
    (_set("variants.int8.input", [1, 64, 3]), "variants.int8.input", "must be an object (got a list)"),
    (_set("variants.int8.output.shape", [1, 0]), "variants.int8.output.shape.1", "greater than or equal to 1"),
    (_set("variants.int8", 3), "variants.int8", "must be an object (got 3)"),
    (_set("variants", {}), "variants", "at least 1"),
    (_set("labels", "Sit,Walk,Wave"), "labels", "must be a list"),
    (_set("labels", ["Sit", 2, "Wave"]), "labels.1", "must be a string (got 2)"),
    (_set("labels", ["Sit", "Sit", "Wave"]), "labels", "repeated: Sit"),
    (_set("labels", []), "labels", "at least 1"),
    (_set("kind", "audio"), "kind", "'sensor' or 'video'"),
    (_set("schema_version", "1"), "schema_version", "must be an integer (got '1')"),
    (_set("schema_version", True), "schema_version", "must be an integer (got True)"),
    (_set("model_id", None), "model_id", "must be a string"),
    (_set("input.shape", [1, -64, 3]), "input.shape.1", "greater than or equal to 1"),
    (_set("input", None), "input", "must be an object (got None)"),
    (_set("default_variant", "int4"), "default_variant", "'int4' is not one of the variants"),
    (_set("preprocessing.window", 64.5), "preprocessing.window", "must be an integer (got 64.5)"),
    (_set("preprocessing.window", 10**30), "preprocessing.window", "less than or equal"),
    (_set("preprocessing.sample_rate_hz", 0), "preprocessing.sample_rate_hz", "greater than 0"),
    (_set("preprocessing.channels", None), "preprocessing.channels", "must be a list"),
    (_set("preprocessing.value_scaling.scale", [1, 2]), "preprocessing.value_scaling.scale", "has 2 values"),
    (_set("preprocessing.normalisation.std", [1, 0, 1]), "preprocessing.normalisation.std.1", "greater than 0"),
    (_set("metrics", []), "metrics", "must be an object"),
    (_set("variants.int8.parts", {}), "variants.int8.parts", "at least 1"),
    (_delete("variants.int8.file"), "missing key 'variants.int8.file'", ""),
    (_delete("labels"), "missing key 'labels'", ""),
    (_delete("preprocessing.value_scaling"), "missing key 'preprocessing.value_scaling'", ""),
]


@pytest.mark.parametrize("change, key, reason", DAMAGE, ids=[d[1] + ":" + d[2][:20] for d in DAMAGE])
def test_a_damaged_value_names_the_file_and_key(tiny_bundle_copy, change, key, reason):
    path = edit(tiny_bundle_copy, change)
    with pytest.raises(BundleError) as info:
        Bundle.load(tiny_bundle_copy)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and key in message and reason in message, message
    assert "\n" not in message  # one line for the journal


def test_every_problem_is_listed(tiny_bundle_copy):
    def change(data: dict[str, Any]) -> None:
        data["variants"]["int8"]["file"] = None
        data["variants"]["float32"]["size_bytes"] = "big"

    edit(tiny_bundle_copy, change)
    with pytest.raises(BundleError) as info:
        Bundle.load(tiny_bundle_copy)
    assert sorted(info.value.problems) == [
        "variants.float32.size_bytes: must be an integer (got 'big')",
        "variants.int8.file: must be a string (got None)",
    ]


@pytest.mark.parametrize(
    "content, reason",
    [
        (os.urandom(300) + b"\xff", "not UTF-8 text"),
        (b"", "invalid JSON at line 1"),
        (b'{"schema_version": 1,', "invalid JSON"),
        (b"[1, 2, 3]", "top level must be an object, got a list"),
        (b"null", "top level must be an object, got null"),
        (b'{"schema_version": NaN}', "NaN is not JSON"),
        (b'{"x": ' + b"9" * 5000 + b"}", "invalid JSON"),  # past Python's int-from-text limit
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),  # deeper than the parser's recursion
    ],
    ids=["random-bytes", "empty", "truncated", "list", "null", "nan", "huge-int", "deep"],
)
def test_a_file_that_is_not_a_bundle_json(tiny_bundle_copy, content, reason):
    path = tiny_bundle_copy / BUNDLE_FILE
    path.write_bytes(content)
    with pytest.raises(BundleError, match=reason) as info:
        Bundle.load(tiny_bundle_copy)
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, EdgeHarError)


def test_a_huge_file_is_refused_before_it_is_read(tiny_bundle_copy):
    path = tiny_bundle_copy / BUNDLE_FILE
    with open(path, "ab") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: no 64 MB written
    with pytest.raises(BundleError, match="a bundle.json is a few kB"):
        Bundle.load(tiny_bundle_copy)


def test_a_newer_schema_is_refused_with_the_version_alone(tiny_bundle_copy):
    def newer(data: dict[str, Any]) -> None:
        data["schema_version"] = SCHEMA_VERSION + 1
        data["variants"] = {"int8": {"files": ["a", "b"]}}  # whatever a later schema looks like

    path = edit(tiny_bundle_copy, newer)
    with pytest.raises(BundleError) as info:
        Bundle.load(tiny_bundle_copy)
    assert str(info.value) == (
        f"{path}: schema_version {SCHEMA_VERSION + 1} is newer than the bundle schema this edge-har reads "
        f"({SCHEMA_VERSION}); upgrade edge-har on the device or convert with the version it runs"
    )
    edit(tiny_bundle_copy, _set("schema_version", 0))
    with pytest.raises(BundleError, match="schema_version 0 is not the bundle schema this edge-har reads"):
        Bundle.load(tiny_bundle_copy)


def test_unknown_extra_keys_stay_loadable(tiny_bundle_copy):
    """The workstation records more than the device reads; an added key must not break an older reader."""

    def extra(data: dict[str, Any]) -> None:
        data["new_section"] = {"anything": [1, 2]}
        data["variants"]["int8"]["new_field"] = None

    edit(tiny_bundle_copy, extra)
    bundle = Bundle.load(tiny_bundle_copy)
    assert bundle.verify() == [] and bundle.labels == ["Sit", "Walk", "Wave"]


def test_the_writer_output_validates(tiny_bundle):
    """What convert writes passes the schema (export.validate is the writer's own check)."""
    bundle = export.validate(tiny_bundle)
    assert bundle.variant().name == "int8" and bundle.kind == "sensor"
