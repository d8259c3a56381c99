"""The bundle store of ``edge-har serve``: upload a bundle's tar, list it, download it whole or resumed.

Real parts throughout: the tiny converted bundle (and a signed copy of it, signed with a real Ed25519 key),
the app through FastAPI's TestClient on a SQLite file and a store folder under tmp_path, archives made with
tarfile as a user's ``tar`` would, and what comes back loaded and verified by the device's own reader. The
refusals are archives that try to leave the folder or smuggle a link, a bundle whose model no longer
matches bundle.json, bytes that are no tar, and uploads over the size limits; every one is a one-line 4xx
and leaves no temporary file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Any, Optional

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.core.bundle import Bundle  # noqa: E402
from edge_har.core.signing import (  # noqa: E402
    SIGNATURE_FILE,
    generate_key,
    key_id,
    load_public_key,
    sign_bundle,
    verify_signature,
)
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.bundle_store import TMP_PREFIX, BundleStore, BundleStoreError, check_bundle_id  # noqa: E402
from edge_har.web.config import ServeConfig, bundle_store_root  # noqa: E402
from tests.test_startup_checks import flip_byte  # noqa: E402

KEPT = ["bundle.json", "model_dynamic_range.tflite", "model_float32.tflite", "model_int8.tflite", "selftest.npz"]
ITEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{12}\.(tar|json)$")


def tar_of(folder: Path, *, gz: bool = False, top: Optional[str] = None) -> bytes:
    """``folder`` archived as a user would: its entries at the top level, or inside the one folder ``top``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        if top is None:
            for entry in sorted(folder.iterdir()):
                tar.add(entry, arcname=entry.name)
        else:
            tar.add(folder, arcname=top)
    return buf.getvalue()


def tar_with(folder: Path, extra: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """The bundle's files plus one hand-made member ``extra`` (what ``tar`` would not write by itself); a link
    takes the place of the file of its name, anything else comes after the bundle's files."""
    buf = io.BytesIO()
    replaced = extra.name if extra.issym() or extra.islnk() else None
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and entry.name != replaced:
                tar.add(entry, arcname=entry.name)
        tar.addfile(extra, io.BytesIO(data) if extra.isreg() else None)
    return buf.getvalue()


def leftovers(root: Path) -> list[str]:
    """Temporary files and folders in the store, and files besides its bundles' ``<id>.tar`` and ``<id>.json``
    (another part of serve may keep a folder of its own there)."""
    if not root.exists():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.name.startswith(TMP_PREFIX) or (p.is_file() and not ITEM_NAME.match(p.name))
    )


def stored_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_file()) if root.exists() else []


def one_line_detail(reply: Any) -> str:
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    return detail


@pytest.fixture
def cfg(tmp_path) -> ServeConfig:
    return ServeConfig(db_path=tmp_path / "w.sqlite3", bundle_store_dir=tmp_path / "bundles")


@pytest.fixture
def client(cfg) -> Any:
    with TestClient(create_app(cfg)) as c:
        yield c


def post(client: TestClient, body: bytes, content_type: str = "application/x-tar") -> Any:
    return client.post("/api/bundles", content=body, headers={"Content-Type": content_type})


# ---------------------------------------------------------------------------------------------- upload


def test_plain_and_gzip_uploads_with_or_without_a_top_folder_are_one_bundle(client, cfg, tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    first = post(client, tar_of(tiny_bundle))
    assert first.status_code == 201, first.text
    item = first.json()
    assert check_bundle_id(item["id"]) and item["id"] == f"{bundle.model_id}-{item['sha256'][:12]}"
    assert (item["model_id"], item["kind"], item["labels"]) == (bundle.model_id, "sensor", bundle.labels)
    assert item["default_variant"] == bundle.default_variant and item["variants"] == list(bundle.variants)
    assert item["stream"] == {
        "sample_rate_hz": bundle.preprocessing.sample_rate_hz,
        "window": 64,
        "stride": 16,
        "channels": list(bundle.preprocessing.channels),
    }
    assert item["signed_by"] is None and abs(item["created_at"] - time.time()) < 60
    for gz, top, content_type in ((True, None, "application/gzip"), (False, "hmp", "application/x-tar")):
        again = post(client, tar_of(tiny_bundle, gz=gz, top=top), content_type)
        assert again.status_code == 201, again.text
        assert again.json() == item  # the same bundle: the same canonical tar, id and item
    # `tar czf x.tgz -C parent bundle` names members "bundle/...", `tar cf x.tar -C bundle .` names them "./..."
    assert post(client, tar_of(tiny_bundle, gz=True, top="bundle"), "application/gzip").json()["id"] == item["id"]
    assert post(client, tar_of(tiny_bundle, top="."), "application/octet-stream").json()["id"] == item["id"]

    listed = client.get("/api/bundles").json()["bundles"]
    assert listed == [item]
    assert client.get(f"/api/bundles/{item['id']}").json() == item
    root = bundle_store_root(cfg)
    assert stored_files(root) == [f"{item['id']}.json", f"{item['id']}.tar"] and leftovers(root) == []


def test_the_list_is_newest_first(client, tiny_bundle_copy, tiny_bundle):
    older = post(client, tar_of(tiny_bundle)).json()
    (tiny_bundle_copy / "bundle.json").write_text(
        json.dumps({**json.loads((tiny_bundle_copy / "bundle.json").read_text()), "model_id": "second model!"})
    )
    time.sleep(0.01)
    newer = post(client, tar_of(tiny_bundle_copy)).json()
    assert newer["id"].startswith("second_model_-") and newer["model_id"] == "second model!"
    assert [b["id"] for b in client.get("/api/bundles").json()["bundles"]] == [newer["id"], older["id"]]


# ---------------------------------------------------------------------------------------------- download


def test_download_whole_and_resumed_gives_a_bundle_the_device_loads(client, tiny_bundle, tmp_path):
    item = post(client, tar_of(tiny_bundle)).json()
    url = f"/api/bundles/{item['id']}/bundle.tar"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/x-tar"
    assert hashlib.sha256(whole.content).hexdigest() == item["sha256"] == whole.headers["x-bundle-sha256"]
    assert whole.headers["etag"] == f'"{item["sha256"]}"' and whole.headers["accept-ranges"] == "bytes"
    assert len(whole.content) == item["size_bytes"] == int(whole.headers["content-length"])

    # A download cut off at byte 100 resumes there: the rest, and the two halves are the file.
    tail = client.get(url, headers={"Range": "bytes=100-"})
    assert tail.status_code == 206, tail.text
    assert tail.content == whole.content[100:]
    assert tail.headers["content-range"] == f"bytes 100-{item['size_bytes'] - 1}/{item['size_bytes']}"
    resumed = client.get(url, headers={"Range": "bytes=100-", "If-Range": whole.headers["etag"]})
    assert resumed.status_code == 206 and resumed.content == whole.content[100:]
    changed = client.get(url, headers={"Range": "bytes=100-", "If-Range": '"another"'})
    assert changed.status_code == 200 and changed.content == whole.content  # not the same file: all of it
    assert client.get(url, headers={"Range": f"bytes={item['size_bytes'] + 10}-"}).status_code == 416

    # The canonical tar: what a device needs, flat, sorted, without owners or times.
    with tarfile.open(fileobj=io.BytesIO(whole.content[:100] + tail.content)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == KEPT  # no keras_model.h5, training/ or evaluation/
        for m in members:
            assert m.isreg() and (m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) == (0o644, 0, 0, 0, "", "")
        out = tmp_path / "downloaded"
        tar.extractall(out)
    assert Bundle.load(out).verify() == []
    for name in KEPT:
        assert (out / name).read_bytes() == (tiny_bundle / name).read_bytes()


def test_a_signed_bundle_names_its_key_and_keeps_its_signature(client, tiny_bundle_copy, tiny_bundle, tmp_path):
    private, public = generate_key(tmp_path / "keys", "release")
    sign_bundle(tiny_bundle_copy, private, signer="ci")
    unsigned = post(client, tar_of(tiny_bundle)).json()
    reply = post(client, tar_of(tiny_bundle_copy, gz=True), "application/gzip")
    assert reply.status_code == 201, reply.text
    item = reply.json()
    assert item["signed_by"] == key_id(load_public_key(public))
    assert item["id"] != unsigned["id"] and item["model_id"] == unsigned["model_id"]
    tar_bytes = client.get(f"/api/bundles/{item['id']}/bundle.tar").content
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert sorted(tar.getnames()) == sorted([*KEPT, SIGNATURE_FILE])
        tar.extractall(tmp_path / "downloaded")
    # what a device with trust.keys does with it: the signature verifies against the key
    assert verify_signature(tmp_path / "downloaded", [public]).key_id == item["signed_by"]


# ---------------------------------------------------------------------------------------------- refusals


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    return info


@pytest.mark.parametrize(
    ("extra", "data", "words"),
    [
        (_member("../x", size=4), b"evil", ["'../x'", ".."]),
        (_member("a/../../x", size=4), b"evil", ["'a/../../x'", ".."]),
        (_member("/etc/cron.d/x", size=4), b"evil", ["'/etc/cron.d/x'", "absolute"]),
        (_member("model_int8.tflite", tarfile.SYMTYPE, linkname="/etc/passwd"), b"", ["symbolic link", "passwd"]),
        (_member("model_int8.tflite", tarfile.LNKTYPE, linkname="bundle.json"), b"", ["hard link"]),
        (_member("dev", tarfile.CHRTYPE), b"", ["device"]),
        (_member("fifo", tarfile.FIFOTYPE), b"", ["FIFO"]),
        (_member("bundle.json", size=2), b"{}", ["'bundle.json'", "twice"]),
    ],
    ids=["dotdot", "dotdot-inside", "absolute", "symlink", "hardlink", "device", "fifo", "duplicate"],
)
def test_an_unsafe_archive_is_refused_with_one_line_naming_the_member(client, cfg, tiny_bundle, extra, data, words):
    reply = post(client, tar_with(tiny_bundle, extra, data))
    assert reply.status_code == 400, reply.text
    detail = one_line_detail(reply)
    for word in words:
        assert word in detail, detail
    assert client.get("/api/bundles").json()["bundles"] == []
    assert leftovers(bundle_store_root(cfg)) == []
    assert not (cfg.bundle_store_dir / "x").exists() and not (cfg.bundle_store_dir.parent / "x").exists()


def test_a_model_changed_after_conversion_is_refused_naming_the_key(client, cfg, tiny_bundle_copy):
    flip_byte(tiny_bundle_copy / "model_int8.tflite")
    reply = post(client, tar_of(tiny_bundle_copy))
    assert reply.status_code == 400
    detail = one_line_detail(reply)
    assert "variants.int8.sha256" in detail and "model_int8.tflite" in detail, detail
    assert str(cfg.bundle_store_dir) not in detail  # the temporary folder is not shown, the bundle's names are
    (tiny_bundle_copy / "model_float32.tflite").unlink()
    detail = one_line_detail(post(client, tar_of(tiny_bundle_copy)))
    assert "variants.float32.file" in detail and "missing" in detail, detail
    assert leftovers(bundle_store_root(cfg)) == []


def test_what_is_not_a_bundle_is_refused_with_one_line(client, tiny_bundle_copy, tmp_path):
    for body in (b"", b"hello, this is not a tar", os.urandom(3000), gzip.compress(b"not a tar inside")):
        reply = post(client, body)
        assert reply.status_code == 400, reply.text
        assert "tar" in one_line_detail(reply) or "gzip" in one_line_detail(reply)
    nothing = tmp_path / "empty"
    nothing.mkdir()
    (nothing / "README").write_text("no bundle here")
    assert "no bundle.json" in one_line_detail(post(client, tar_of(nothing)))
    (tiny_bundle_copy / "bundle.json").write_text('{"schema_version": 1, "labels": "Walk"}')
    detail = one_line_detail(post(client, tar_of(tiny_bundle_copy)))
    assert detail.startswith("bundle.json: ") and "labels" in detail, detail
    (tiny_bundle_copy / "bundle.json").write_bytes(b"\xff\xfe")
    assert "not UTF-8" in one_line_detail(post(client, tar_of(tiny_bundle_copy)))


def test_uploads_over_the_limits_are_413(tmp_path, tiny_bundle):
    body = tar_of(tiny_bundle)
    cfg = ServeConfig(db_path=tmp_path / "w.sqlite3", max_bundle_bytes=len(body) - 1)
    root = bundle_store_root(cfg)
    assert root == tmp_path / "edge-har-bundles"  # beside the SQLite file
    with TestClient(create_app(cfg)) as client:
        reply = post(client, body)  # a declared Content-Length over the limit: refused before reading
        assert reply.status_code == 413 and "over" in one_line_detail(reply)

        def chunks() -> Any:  # no Content-Length (chunked): refused as the bytes are counted
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        reply = client.post("/api/bundles", content=chunks(), headers={"Content-Type": "application/x-tar"})
        assert reply.status_code == 413 and str(len(body) - 1) in one_line_detail(reply)

        # A gzip of a few kB that unpacks to 40 times the limit: refused while it unpacks.
        bomb = io.BytesIO()
        with tarfile.open(fileobj=bomb, mode="w:gz") as tar:
            tar.addfile(_member("zeros", size=40 * len(body)), io.BytesIO(bytes(40 * len(body))))
        assert len(bomb.getvalue()) < len(body) // 10
        reply = post(client, bomb.getvalue(), "application/gzip")
        assert reply.status_code == 413 and "unpacks" in one_line_detail(reply)
        assert client.get("/api/bundles").json()["bundles"] == []
    assert stored_files(root) == [] and leftovers(root) == []


def test_unknown_and_malformed_ids(client):
    for path in ("/api/bundles/nothing-0123456789ab", "/api/bundles/nothing-0123456789ab/bundle.tar"):
        reply = client.get(path)
        assert reply.status_code == 404 and "nothing-0123456789ab" in one_line_detail(reply)
    assert client.delete("/api/bundles/nothing-0123456789ab").status_code == 404
    for bad in ("..", "x", "nothing-0123456789AB", "-0123456789ab", "a" * 100 + "-0123456789ab"):
        assert client.get(f"/api/bundles/{bad}").status_code in (404, 422), bad


def test_delete(client, cfg, tiny_bundle):
    item = post(client, tar_of(tiny_bundle)).json()
    reply = client.delete(f"/api/bundles/{item['id']}")
    assert reply.status_code == 204 and reply.content == b""
    assert client.get(f"/api/bundles/{item['id']}").status_code == 404
    assert client.get(f"/api/bundles/{item['id']}/bundle.tar").status_code == 404
    assert client.get("/api/bundles").json() == {"bundles": []}
    assert stored_files(bundle_store_root(cfg)) == [] and leftovers(bundle_store_root(cfg)) == []
    assert post(client, tar_of(tiny_bundle)).json()["id"] == item["id"]  # and it can come back


# ---------------------------------------------------------------------------------------------- the store itself


def test_the_store_takes_a_file_or_chunks_and_checks_ids(tmp_path, tiny_bundle):
    store = BundleStore(tmp_path / "store", 50 * 1024 * 1024)
    assert store.list() == [] and not store.root.exists()  # created at the first upload
    body = tar_of(tiny_bundle, gz=True)
    item = store.add(io.BytesIO(body))
    assert store.add(iter([body[:1000], body[1000:]])) == item == store.get(item["id"])
    assert store.archive_path(item["id"]) == store.root / f"{item['id']}.tar"
    for bad in ("../w", f"../{item['id']}", "", "x" * 500, item["id"] + "/"):
        assert store.get(bad) is None and store.archive_path(bad) is None and not store.delete(bad)
    with pytest.raises(BundleStoreError, match="not a tar archive") as exc:
        store.add(iter([b"x" * 10]))
    assert exc.value.status == 400
    with pytest.raises(BundleStoreError) as exc:
        BundleStore(tmp_path / "small", 1000).add(io.BytesIO(body))
    assert exc.value.status == 413
    # a temporary file a crash left an hour ago goes when the store opens; a younger one (in flight) stays
    old, young = store.root / f"{TMP_PREFIX}upload-old", store.root / f"{TMP_PREFIX}upload-young"
    old.write_bytes(b"x")
    young.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    BundleStore(store.root, 1)
    assert not old.exists() and young.exists()


def test_serve_option_bundle_store(tmp_path):
    from edge_har.cli import build_parser
    from edge_har.core.errors import CommandError
    from edge_har.web.serve_cli import build_serve_config

    base = ["serve", "--db-path", str(tmp_path / "w.sqlite3")]
    cfg = build_serve_config(build_parser("serve").parse_args([*base, "--bundle-store", str(tmp_path / "b")]))
    assert bundle_store_root(cfg) == tmp_path / "b"
    assert bundle_store_root(build_serve_config(build_parser("serve").parse_args(base))) == (
        tmp_path / "edge-har-bundles"
    )
    (tmp_path / "file").write_text("x")
    with pytest.raises(CommandError, match="--bundle-store"):
        build_serve_config(build_parser("serve").parse_args([*base, "--bundle-store", str(tmp_path / "file")]))


# ---------------------------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def real_tar(tiny_bundle) -> bytes:
    return tar_of(tiny_bundle)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_any_body_is_201_400_or_413_and_leaves_no_temporary_file(tmp_path_factory, real_tar, data):
    """Random bytes, and a real bundle's tar cut, damaged or gzipped: never a 5xx, never a file left over."""
    body = data.draw(
        st.one_of(
            st.binary(max_size=4096),
            st.integers(0, len(real_tar)).map(lambda n: real_tar[:n]),
            st.tuples(st.integers(0, len(real_tar) - 1), st.integers(1, 255)).map(
                lambda t: real_tar[: t[0]] + bytes([real_tar[t[0]] ^ t[1]]) + real_tar[t[0] + 1 :]
            ),
            st.integers(0, 4096).map(lambda n: gzip.compress(real_tar[: n * 64])),
            st.just(real_tar),
        ),
        label="body",
    )
    limit = data.draw(st.sampled_from([len(real_tar) * 2, len(real_tar) // 2]), label="max_bundle_bytes")
    folder = tmp_path_factory.mktemp("prop")
    cfg = ServeConfig(db_path=folder / "w.sqlite3", max_bundle_bytes=limit)
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client:
        reply = post(client, body, data.draw(st.sampled_from(["application/x-tar", "application/gzip"])))
        assert reply.status_code in (201, 400, 413), (reply.status_code, reply.text[:300])
        event(f"status {reply.status_code}")  # pytest --hypothesis-show-statistics shows how often each came
        if reply.status_code != 201:
            one_line_detail(reply)
        listed = client.get("/api/bundles").json()["bundles"]
        assert len(listed) == (1 if reply.status_code == 201 else 0)
    assert leftovers(bundle_store_root(cfg)) == []


# ---------------------------------------------------------------------------------------------- the schema


def fuzz_route(
    op: Any, mode: Any, store: BundleStore, body: bytes, checks: list[Any], seen: dict[str, set[int]]
) -> None:
    """schemathesis's requests for one operation; a positive one names the stored bundle half the time (and then
    asks a download for a range half of that), and a positive upload sends the bundle's real tar half the time."""
    from schemathesis import GenerationMode

    positive = mode is GenerationMode.POSITIVE

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(mode), real=st.booleans(), resume=st.integers(0, 2 * len(body)))
    def check(case: Any, real: bool, resume: int) -> None:
        stored = store.add(io.BytesIO(body))["id"]  # a DELETE may have taken it: back for this request
        if positive and real and "bundle_id" in (case.path_parameters or {}):
            case.path_parameters["bundle_id"] = stored
            if op.label.endswith("bundle.tar") and resume % 2:
                case.headers = {**(case.headers or {}), "Range": f"bytes={resume}-"}
        if positive and real and op.label == "POST /api/bundles":
            case.body = body
        response = case.call()
        seen.setdefault(op.label, set()).add(response.status_code)
        case.validate_response(response, checks=checks)

    try:
        check()
    except Exception as exc:
        if type(exc).__name__ != "Unsatisfiable":  # schemathesis cannot break a parameterless route's schema
            raise


def test_schemathesis_over_the_bundle_routes_with_a_stored_bundle(tmp_path, tiny_bundle):
    """Every bundle route's answers as /openapi.json documents them, the 200 and 206 of a stored bundle included
    (tests/test_web_api_fuzz.py fuzzes them on an empty store, where the item routes only reach their 404)."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    body = tar_of(tiny_bundle)
    app = create_app(ServeConfig(db_path=tmp_path / "w.sqlite3"))
    seen: dict[str, set[int]] = {}
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        ops = [result.ok() for result in schema.get_all_operations()]
        ops = [op for op in ops if op.label.split(" ", 1)[1].startswith("/api/bundles")]
        assert len(ops) == 5
        for op in ops:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_route(op, mode, app.state.bundles, body, checks, seen)
        # and each documented answer of a stored bundle once for certain, checked the same way
        by_label = {op.label: op for op in ops}
        stored = {"bundle_id": app.state.bundles.add(io.BytesIO(body))["id"]}
        for label, case, status in (
            ("GET /api/bundles/{bundle_id}", {"path_parameters": stored}, 200),
            ("GET /api/bundles/{bundle_id}/bundle.tar", {"path_parameters": stored}, 200),
            (
                "GET /api/bundles/{bundle_id}/bundle.tar",
                {"path_parameters": stored, "headers": {"Range": "bytes=100-"}},
                206,
            ),
            (
                "GET /api/bundles/{bundle_id}/bundle.tar",
                {"path_parameters": stored, "headers": {"Range": "bytes=9999999-"}},
                416,
            ),
            ("DELETE /api/bundles/{bundle_id}", {"path_parameters": stored}, 204),
            ("POST /api/bundles", {"body": body, "media_type": "application/octet-stream"}, 201),
            ("POST /api/bundles", {"body": b"not a tar", "media_type": "application/octet-stream"}, 400),
        ):
            request = by_label[label].Case(**case)
            response = request.call()
            assert response.status_code == status, (label, case.get("headers"), response.text[:200])
            request.validate_response(response, checks=checks)
    assert not {500, 502, 503, 504} & {code for codes in seen.values() for code in codes}, seen
