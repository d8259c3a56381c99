"""``edge-har keygen``, ``sign`` and ``verify``: Ed25519 keys, a bundle's signature, and checking one.

The signature is over ``bundle.json``, which records every file's sha256 (:mod:`edge_har.core.signing`);
``verify`` checks both, as a device does before it runs a bundle. None of them needs TensorFlow or an
interpreter: sign on the workstation, verify anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_har.core.errors import CommandError

_KEYGEN_EPILOG = """\
example:
  edge-har keygen --out keys --name release      # keys/release.key (0600, keep it off the devices) and keys/release.pub
  edge-har sign bundles/hmp --key keys/release.key
  # on each device: copy keys/release.pub and add to its config
  #   trust:
  #     keys: [release.pub]
  #     require_signature: true
"""


def register_keygen(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keygen",
        description=(
            "Make an Ed25519 key pair for signing bundles: NAME.key (the private key, PEM, mode 0600; it stays on the "
            "machine that signs) and NAME.pub (the public key a device's trust.keys lists). Never overwrites a key."
        ),
        epilog=_KEYGEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the two files (made if absent)"
    )
    parser.add_argument("--name", default="edge-har", metavar="NAME", help="file name stem (default: edge-har)")
    parser.set_defaults(func=_keygen)


def register_sign(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sign",
        description=(
            "Sign a bundle: checks every file against the sha256 bundle.json records, then writes bundle.sig (an "
            "Ed25519 signature over bundle.json, with the key's id). Signing again replaces the signature; changing "
            "any file of the bundle afterwards makes devices that trust the key refuse it."
        ),
        epilog=_KEYGEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, help="the bundle folder (holding bundle.json)")
    parser.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="the private key (NAME.key from keygen)"
    )
    parser.add_argument("--signer", metavar="TEXT", help="who signed, recorded in bundle.sig (default: none)")
    parser.set_defaults(func=_sign)


def register_verify(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        description=(
            "Check a bundle as a device that trusts --trust keys does: bundle.json valid, every file's size and "
            "sha256 as recorded, and bundle.sig made by one of the keys over this bundle.json. Exit 0 when it "
            "holds, 1 with one line per problem when not."
        ),
    )
    parser.add_argument("bundle", type=Path, help="the bundle folder (holding bundle.json)")
    parser.add_argument(
        "--trust", type=Path, action="append", required=True, metavar="PUB", help="a trusted public key (repeatable)"
    )
    parser.set_defaults(func=_verify)


def _keygen(args: argparse.Namespace) -> int:
    from edge_har.core.signing import generate_key, key_id, load_public_key

    private, public = generate_key(args.out, args.name)
    print(f"private key {private} (keep it secret; mode 0600)")
    print(f"public key  {public} (id {key_id(load_public_key(public))}; list it under trust.keys on the devices)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from edge_har.core.signing import sign_bundle

    if not (args.bundle / "bundle.json").is_file():
        raise CommandError(f"{args.bundle}: not a model bundle (no bundle.json)")
    out = sign_bundle(args.bundle, args.key, signer=args.signer)
    import json

    doc = json.loads(out.read_text())
    print(f"signed {args.bundle / 'bundle.json'} with key {doc['key_id']}: {out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edge_har.core.bundle import Bundle, BundleError
    from edge_har.core.signing import SignatureError, verify_signature

    problems: list[str] = []
    try:
        bundle = Bundle.load(args.bundle)
        problems += [f"{bundle.root / 'bundle.json'}: {p}" for p in bundle.verify()]
    except BundleError as exc:
        problems.append(str(exc))
    try:
        result = verify_signature(args.bundle, args.trust)
    except SignatureError as exc:
        problems.append(str(exc))
    if problems:
        for line in problems:
            print(f"edge-har verify: {line}", file=sys.stderr)
        return 1
    signer = f", signer {result.signer}" if result.signer else ""
    print(
        f"{args.bundle}: OK, signed by key {result.key_id} ({result.key_file}){signer}; every file matches bundle.json"
    )
    return 0
