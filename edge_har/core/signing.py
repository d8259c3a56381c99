"""Signed bundles: an Ed25519 signature over ``bundle.json``, which names every file with its sha256.

Signing ``bundle.json`` alone is enough because the device loads no model file whose sha256 differs
from what ``bundle.json`` records (:class:`~edge_har.core.interpreter.TFLiteModel`), so a signature
over it covers every file the bundle holds. The signature lives beside it in ``bundle.sig``::

    {"schema_version": 1, "algorithm": "ed25519", "key_id": "3f9c2a71b0de4c11",
     "signed_file": "bundle.json", "sha256": "<sha256 of bundle.json>", "signature": "<base64, 64 bytes>",
     "signer": "workstation-1", "signed_at": "2026-12-07T17:00:00Z"}

Keys are the ``cryptography`` package's Ed25519 in PEM files: ``NAME.key`` (PKCS#8, written 0600,
stays on the workstation) and ``NAME.pub`` (SubjectPublicKeyInfo, copied to each device and listed
under ``trust.keys``). A key's id is the first 16 hex digits of the sha256 of its 32 raw public bytes,
so ``bundle.sig`` says which key signed it and a device names the key it does not trust.

What a device does with a bundle (:func:`check_signature`): with no trusted keys, nothing; with keys,
a signed bundle must verify with one of them (a bad or foreign signature is always an error) and an
unsigned one is an error when ``require_signature`` is on, else a warning.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from edge_har.core.errors import EdgeHarError

__all__ = [
    "SIGNATURE_FILE",
    "SignatureError",
    "SignatureResult",
    "check_signature",
    "generate_key",
    "key_id",
    "load_public_key",
    "sign_bundle",
    "verify_signature",
]

SIGNATURE_FILE = "bundle.sig"
SIGNED_FILE = "bundle.json"
SIGNATURE_VERSION = 1
MAX_SIG_BYTES = 16 * 1024  # a bundle.sig is about 300 bytes
MAX_KEY_BYTES = 16 * 1024  # a PEM Ed25519 key is about 120 bytes


class SignatureError(EdgeHarError, ValueError):
    """A key or signature that cannot be used or does not verify; the message names the file."""


@dataclass(frozen=True)
class SignatureResult:
    """A verified signature: which trusted key made it, by its id and its file."""

    key_id: str
    key_file: Path
    signer: Optional[str]


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - the device and dev extras install it
        raise SignatureError("signed bundles need the 'cryptography' package: pip install 'edge-har[device]'") from None
    return serialization, ed25519


def key_id(public_key: Any) -> str:
    """The first 16 hex digits of the sha256 of the key's 32 raw bytes."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_small(path: Path, limit: int, what: str) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SignatureError(f"{path}: not a regular file ({what})")
        if info.st_size > limit:
            raise SignatureError(f"{path}: {info.st_size} bytes; a {what} is well under {limit}")
        return path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def generate_key(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair ``NAME.key`` (0600) and ``NAME.pub`` in ``out_dir``; never overwrites one."""
    serialization, ed25519 = _crypto()
    if not name or any(c in name for c in "/\\\x00") or name.startswith("."):
        raise SignatureError(f"--name {name!r}: a key name is a plain file name (letters, digits, - and _)")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    private_file, public_file = folder / f"{name}.key", folder / f"{name}.pub"
    for file in (private_file, public_file):
        if file.exists():
            raise SignatureError(f"{file}: already exists; a key is never overwritten (pick another --name)")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_file.write_bytes(public_pem)
    return private_file, public_file


def _load_private_key(path: Path) -> Any:
    serialization, ed25519 = _crypto()
    data = _read_small(path, MAX_KEY_BYTES, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{path}: a {type(key).__name__}, not an Ed25519 key (make one with edge-har keygen)")
    return key


def load_public_key(path: str | Path) -> Any:
    """An Ed25519 public key from a PEM file; SignatureError naming the file otherwise."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    data = _read_small(path, MAX_KEY_BYTES, "public key")
    if b"PRIVATE KEY" in data:
        raise SignatureError(f"{path}: a private key; a device is given the .pub file, never the .key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"{path}: a {type(key).__name__}, not an Ed25519 key (make one with edge-har keygen)")
    return key


def sign_bundle(bundle_dir: str | Path, key_file: str | Path, signer: Optional[str] = None) -> Path:
    """Sign ``bundle_dir/bundle.json`` with ``key_file`` and write ``bundle.sig`` (atomically); its path.

    The bundle is read by the device's own reader first and every file checked against its sha256, so
    what is signed is a bundle a device would load.
    """
    from edge_har.core.bundle import Bundle, BundleError
    from edge_har.core.recording_layout import atomic_write

    root = Path(bundle_dir)
    key = _load_private_key(Path(key_file))
    try:
        bundle = Bundle.load_verified(root)
    except BundleError as exc:
        raise SignatureError(f"cannot sign: {exc}") from None
    data = (bundle.root / SIGNED_FILE).read_bytes()
    doc = {
        "schema_version": SIGNATURE_VERSION,
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signed_file": SIGNED_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(key.sign(data)).decode("ascii"),
        "signer": signer,
        "signed_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    out = bundle.root / SIGNATURE_FILE
    atomic_write(out, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    return out


def _read_signature(file: Path) -> dict[str, Any]:
    raw = _read_small(file, MAX_SIG_BYTES, "signature file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SignatureError(f"{file}: not a JSON signature file (damaged?)") from None
    if not isinstance(doc, dict):
        raise SignatureError(f"{file}: not a JSON object")
    if doc.get("schema_version") != SIGNATURE_VERSION or doc.get("algorithm") != "ed25519":
        raise SignatureError(
            f"{file}: schema_version {doc.get('schema_version')!r} / algorithm {doc.get('algorithm')!r}; "
            f"this edge-har reads version {SIGNATURE_VERSION}, ed25519"
        )
    if doc.get("signed_file") != SIGNED_FILE:
        raise SignatureError(f"{file}: signed_file must be {SIGNED_FILE}, got {str(doc.get('signed_file'))[:60]!r}")
    for key in ("key_id", "signature"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise SignatureError(f"{file}: {key}: missing or not a string")
    return doc


def verify_signature(bundle_dir: str | Path, key_files: Sequence[str | Path]) -> SignatureResult:
    """Check ``bundle.sig`` against ``bundle.json`` with the trusted keys; SignatureError with one line otherwise."""
    root = Path(bundle_dir)
    file = root / SIGNATURE_FILE
    if not file.exists():
        raise SignatureError(f"{file}: missing: the bundle is not signed (sign it with edge-har sign BUNDLE --key KEY)")
    doc = _read_signature(file)
    keys = {}
    for path in key_files:
        key = load_public_key(path)
        keys[key_id(key)] = (key, Path(path))
    if doc["key_id"] not in keys:
        trusted = ", ".join(f"{kid} ({p.name})" for kid, (_, p) in keys.items()) or "none"
        raise SignatureError(
            f"{file}: signed by key {doc['key_id'][:32]}, which this device does not trust (trusted: {trusted})"
        )
    key, key_path = keys[doc["key_id"]]
    data = _read_small(root / SIGNED_FILE, 1 << 22, "bundle.json")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except ValueError:
        raise SignatureError(f"{file}: signature: not base64") from None
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            f"{file}: the signature does not match {root / SIGNED_FILE} (changed after signing, or a damaged copy)"
        ) from None
    signer = doc.get("signer")
    return SignatureResult(doc["key_id"], key_path, signer if isinstance(signer, str) else None)


def check_signature(
    bundle_dir: str | Path, key_files: Sequence[str | Path], require: bool
) -> tuple[list[str], list[str], Optional[SignatureResult]]:
    """(errors, warnings, result) of a device's trust settings applied to a bundle (see the module doc)."""
    if not key_files:
        return [], [], None
    root = Path(bundle_dir)
    if not (root / SIGNATURE_FILE).exists() and not require:
        return (
            [],
            [f"{root / SIGNATURE_FILE}: missing: the bundle is not signed (trust.require_signature is off)"],
            None,
        )
    try:
        return [], [], verify_signature(root, key_files)
    except SignatureError as exc:
        return [str(exc)], [], None
