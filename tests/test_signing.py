"""Signed bundles on the real tiny bundle: keygen, sign, verify, and a device that trusts keys.

A device with ``trust.keys`` runs a bundle signed by one of them; it refuses (``edge-har run`` exits
78, ``validate-config`` prints the same one line) a bundle.json changed after signing, a model file
changed after signing, a signature by a key it does not trust, and, with ``require_signature``, an
unsigned bundle. ``bundle.sig`` and key files are outside input: fuzzed with hypothesis.
"""

from __future__ import annotations

import io
import json
import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.cli import main
from edge_har.core.signing import (
    SIGNATURE_FILE,
    SignatureError,
    check_signature,
    generate_key,
    key_id,
    load_public_key,
    sign_bundle,
    verify_signature,
)
from edge_har.device.config import load_config
from edge_har.device.daemon import EXIT_CONFIG, run_daemon
from edge_har.device.daemon_cli import validate_files
from edge_har.device.startup import run_startup_checks
from tests.test_startup_checks import REPO, edit_json, flip_byte, write_config


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: generate_key(folder, name) for name in ("release", "other")}


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "k"), "--name", "site"]) == 0
    private, public = tmp_path / "k" / "site.key", tmp_path / "k" / "site.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    kid = key_id(load_public_key(public))
    assert len(kid) == 16 and kid in capsys.readouterr().out
    before = private.read_bytes()
    assert main(["keygen", "--out", str(tmp_path / "k"), "--name", "site"]) == 1
    assert "already exists" in capsys.readouterr().err and private.read_bytes() == before
    with pytest.raises(SignatureError, match="a private key"):
        load_public_key(private)


def test_a_signed_bundle_verifies_and_any_change_after_signing_is_named(tiny_bundle_copy, keys, capsys):
    private, public = keys["release"]
    assert main(["sign", str(tiny_bundle_copy), "--key", str(private), "--signer", "ci"]) == 0
    doc = json.loads((tiny_bundle_copy / SIGNATURE_FILE).read_text())
    assert doc["key_id"] == key_id(load_public_key(public)) and doc["signer"] == "ci"
    result = verify_signature(tiny_bundle_copy, [keys["other"][1], public])
    assert result.key_file == public and result.signer == "ci"
    capsys.readouterr()
    assert main(["verify", str(tiny_bundle_copy), "--trust", str(public)]) == 0
    assert "OK, signed by key" in capsys.readouterr().out

    # signed by a key the device does not list
    with pytest.raises(SignatureError, match="which this device does not trust"):
        verify_signature(tiny_bundle_copy, [keys["other"][1]])
    # a model file changed after signing: the signature still matches bundle.json, its sha256 does not
    flip_byte(tiny_bundle_copy / "model_int8.tflite")
    assert main(["verify", str(tiny_bundle_copy), "--trust", str(public)]) == 1
    assert "variants.int8.sha256" in capsys.readouterr().err
    with pytest.raises(SignatureError, match="cannot sign"):  # nor is such a bundle signed
        sign_bundle(tiny_bundle_copy, private)
    flip_byte(tiny_bundle_copy / "model_int8.tflite")
    # bundle.json changed after signing (a label renamed)
    edit_json(tiny_bundle_copy, lambda d: d.update(labels=["Sit", "Walk", "Wavy"]))
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(tiny_bundle_copy, [public])


def test_signing_refuses_a_key_that_is_not_an_ed25519_private_key(tiny_bundle_copy, keys, tmp_path):
    with pytest.raises(SignatureError, match="not an unencrypted PEM private key"):
        sign_bundle(tiny_bundle_copy, keys["release"][1])
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"\x00" * 50)
    with pytest.raises(SignatureError, match=str(junk)):
        sign_bundle(tiny_bundle_copy, junk)
    assert not (tiny_bundle_copy / SIGNATURE_FILE).exists()


def trust_config(tmp_path: Path, bundle: Path, data: Path, keys: list[Path], require: bool, **extra) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        bundle,
        data,
        trust={"keys": [str(k) for k in keys], "require_signature": require},
        **extra,
    )


def test_a_device_that_trusts_the_key_runs_the_signed_bundle(tiny_bundle_copy, tiny_dataset_dir, keys, tmp_path):
    sign_bundle(tiny_bundle_copy, keys["release"][0])
    config = trust_config(tmp_path, tiny_bundle_copy, tiny_dataset_dir, [keys["release"][1]], True)
    result = run_startup_checks(load_config(config))
    assert result.ok and result.warnings == [] and result.runtime is not None


def _unsigned(bundle: Path, keys) -> None:
    pass


def _foreign(bundle: Path, keys) -> None:
    sign_bundle(bundle, keys["other"][0])


def _relabelled(bundle: Path, keys) -> None:
    sign_bundle(bundle, keys["release"][0])
    edit_json(bundle, lambda d: d.update(model_id="someone-elses-model"))


def _damaged_sig(bundle: Path, keys) -> None:
    sign_bundle(bundle, keys["release"][0])
    doc = json.loads((bundle / SIGNATURE_FILE).read_text())
    doc["signature"] = doc["signature"][:-8] + "AAAAAAA="
    (bundle / SIGNATURE_FILE).write_text(json.dumps(doc))


REFUSED = [
    (_unsigned, ["trust.require_signature", "bundle.sig: missing", "edge-har sign"]),
    (_foreign, ["trust.require_signature", "which this device does not trust", "release.pub"]),
    (_relabelled, ["trust.require_signature", "does not match", "bundle.json"]),
    (_damaged_sig, ["trust.require_signature", "does not match"]),
]


@pytest.mark.parametrize("fault, words", REFUSED, ids=[f.__name__ for f, _ in REFUSED])
def test_a_device_refuses_what_its_keys_do_not_vouch_for(
    fault, words, tiny_bundle_copy, tiny_dataset_dir, keys, tmp_path, caplog
):
    fault(tiny_bundle_copy, keys)
    config = trust_config(tmp_path, tiny_bundle_copy, tiny_dataset_dir, [keys["release"][1]], True)
    out, err = io.StringIO(), io.StringIO()
    assert validate_files([config], out=out, err=err) == 1
    (line,) = err.getvalue().strip().splitlines()
    assert line.startswith(f"{config}:") and all(w in line for w in words), line
    with caplog.at_level(logging.ERROR, logger="edge_har.daemon"):
        assert run_daemon(config) == EXIT_CONFIG
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [f"config: {line}"]


def test_trust_settings_that_cannot_work_are_named(tiny_bundle_copy, tiny_dataset_dir, keys, tmp_path):
    sign_bundle(tiny_bundle_copy, keys["release"][0])
    release = keys["release"][1]
    # unsigned but not required: runs, with a warning
    (tiny_bundle_copy / SIGNATURE_FILE).unlink()
    loose = trust_config(tmp_path, tiny_bundle_copy, tiny_dataset_dir, [release], False)
    result = run_startup_checks(load_config(loose))
    assert result.ok and len(result.warnings) == 1 and "not signed" in result.warnings[0]
    # the sha256 check off would let a swapped model file past the signature
    sign_bundle(tiny_bundle_copy, keys["release"][0])
    off = trust_config(
        tmp_path, tiny_bundle_copy, tiny_dataset_dir, [release], True, interpreter={"verify_sha256": False}
    )
    errors = run_startup_checks(load_config(off)).errors
    assert len(errors) == 1 and "interpreter.verify_sha256: must stay true" in errors[0]
    # a key file that is not there
    gone = trust_config(tmp_path, tiny_bundle_copy, tiny_dataset_dir, [tmp_path / "gone.pub"], True)
    assert "gone.pub does not exist" in run_startup_checks(load_config(gone)).errors[0]
    # require_signature with no key is a config error
    bad = trust_config(tmp_path, tiny_bundle_copy, tiny_dataset_dir, [], True)
    out, err = io.StringIO(), io.StringIO()
    assert validate_files([bad], out=out, err=err) == 1
    assert "require_signature needs at least one key" in err.getvalue()


def test_through_the_command_line_a_tampered_bundle_exits_78_naming_the_signature(
    tiny_bundle_copy, tiny_dataset_dir, keys, tmp_path
):
    _relabelled(tiny_bundle_copy, keys)
    config = trust_config(tmp_path, tiny_bundle_copy, tiny_dataset_dir, [keys["release"][1]], True)
    run = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == EXIT_CONFIG and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "does not match" in errors[0], errors


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    changes=st.dictionaries(
        st.sampled_from(["schema_version", "algorithm", "key_id", "signed_file", "sha256", "signature", "signer", "x"]),
        json_value,
        max_size=3,
    ),
    raw=st.none() | st.binary(max_size=200),
)
def test_any_signature_file_is_verified_or_refused_in_one_line(signed_bundle, keys, changes, raw):
    bundle, original = signed_bundle
    doc = {**json.loads(original), **changes}
    (bundle / SIGNATURE_FILE).write_bytes(raw if raw is not None else json.dumps(doc).encode())
    errors, warnings, result = check_signature(bundle, [keys["release"][1]], True)
    if result is not None:  # only what the untouched signature says verifies
        assert errors == [] and (raw is None and doc["signature"] == json.loads(original)["signature"])
    else:
        (line,) = errors
        assert str(bundle / SIGNATURE_FILE) in line and "\n" not in line
    assert warnings == []


@pytest.fixture(scope="module")
def signed_bundle(tiny_bundle, keys, tmp_path_factory):
    import shutil

    bundle = tmp_path_factory.mktemp("signed") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    sign_bundle(bundle, keys["release"][0])
    return bundle, (bundle / SIGNATURE_FILE).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: ("-----BEGIN PUBLIC KEY-----\n" + t).encode())
)
def test_any_public_key_file_loads_as_ed25519_or_is_refused_naming_it(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pub") / "k.pub"
    path.write_bytes(data)
    with pytest.raises(SignatureError) as caught:
        load_public_key(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
