"""``edge-har serve``: the command line of the web app (options -> :class:`ServeConfig` -> uvicorn).

The loopback rule lives here: the server binds 127.0.0.1 unless told otherwise, and another
address needs ``--password-file`` (HTTP basic auth or a bearer token) or an explicit
``--insecure-no-auth``, which logs a warning at every start. A mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from typing import Any, Optional

from edge_har.core.errors import CommandError
from edge_har.web.config import (
    DEFAULT_BUNDLE_STORE_NAME,
    DEFAULT_DB_PATH,
    DEFAULT_PORT,
    DEFAULT_RECORDINGS_DIR_NAME,
    DEFAULT_SESSION_EXPIRY_S,
    GRACEFUL_SHUTDOWN_S,
    ServeConfig,
)

log = logging.getLogger("edge_har.web")

_EPILOG = """\
examples:
  edge-har serve --bundle bundles/hmp                       # http://127.0.0.1:8321, prediction only
  edge-har serve --bundle bundles/hmp --broker 127.0.0.1:1883   # + the live view of every device
  edge-har serve --bundle bundles/hmp --bundle bundles/kth-video --variant float32
  edge-har serve --host 0.0.0.0 --password-file ~/.config/edge-har/web.pass --bundle bundles/hmp \\
      --broker mqtts://broker.lan --broker-username viewer --broker-password-file viewer.pass --ca-file ca.crt
  edge-har serve --bundle bundles/hmp --db-url postgresql+psycopg://edge@127.0.0.1:5432/edge_har

Pages: / (Predict: drop a recording, JSON samples, a clip or an image) and /live (every device seen
on the broker). API: /api/info, /api/predict, /api/devices, /api/stream; its schema: /openapi.json.

Auth: on 127.0.0.1 (the default) none is needed. Any other --host needs --password-file FILE (its
first line is the shared secret: the browser asks for it, any user name; scripts send
'Authorization: Bearer SECRET' or basic auth) or --insecure-no-auth (anyone on the network can use it).
History: every prediction received over MQTT is stored in SQLite (--db-path) or PostgreSQL
(--db-url) and kept --retention-days days.
Recordings: 'edge-har record --push URL' uploads its sessions to /api/recordings (kept under
--recordings-dir, resumable); /api/recordings/export.zip is a set 'edge-har convert --data' reads.
Bundles: POST a bundle's tar to /api/bundles (kept under --bundle-store); devices download
/api/bundles/<id>/bundle.tar (resumable with Range, checked against its sha256).
"""


def register(subparsers: Any) -> None:
    from edge_har.mqtt.cli_options import add_broker_options

    parser = subparsers.add_parser(
        "serve",
        description=(
            "Serve a web app: upload a recording, clip or image and see the prediction with a bar per class and "
            "its segments (the device's preprocessing and interpreter); a live view of every device on an MQTT "
            "broker; a page per device with its history over any range (timeline, confidence, time per activity "
            "per day, CSV); a JSON API, /healthz and Prometheus /metrics. Loopback by default; no TensorFlow."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    web = parser.add_argument_group("web server")
    web.add_argument("--host", default="127.0.0.1", type=str, help="address to bind (default: 127.0.0.1, loopback)")
    web.add_argument("--port", default=DEFAULT_PORT, type=_port, help=f"TCP port (default: {DEFAULT_PORT})")
    web.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="file whose first line is the web app's shared secret (basic auth or bearer token); "
        "required for a non-loopback --host",
    )
    web.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback --host without a password (anyone who can reach it can use it)",
    )
    web.add_argument(
        "--max-upload-mb", default=20.0, type=_positive_float, metavar="MB", help="largest upload (default: 20)"
    )
    web.add_argument(
        "--header-timeout",
        default=ServeConfig.header_timeout_s,
        type=_positive_float,
        metavar="S",
        help="close a connection whose request head is not whole within S seconds "
        f"(default: {ServeConfig.header_timeout_s:g})",
    )
    web.add_argument(
        "--body-timeout",
        default=ServeConfig.body_timeout_s,
        type=_positive_float,
        metavar="S",
        help="close a request whose body is not whole within S seconds of its head; a slow link needs "
        f"--max-upload-mb / S MB/s (default: {ServeConfig.body_timeout_s:g})",
    )
    web.add_argument(
        "--body-idle-timeout",
        default=ServeConfig.body_idle_timeout_s,
        type=_positive_float,
        metavar="S",
        help=f"close a request whose body stalls for S seconds (default: {ServeConfig.body_idle_timeout_s:g})",
    )
    web.add_argument(
        "--max-connections",
        default=ServeConfig.max_connections,
        type=_connections,
        metavar="N",
        help=f"answer 503 beyond N open connections (default: {ServeConfig.max_connections})",
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--bundle",
        action="append",
        type=Path,
        metavar="DIR",
        default=[],
        help="a model bundle to predict with; repeatable (the Predict page offers each)",
    )
    models.add_argument(
        "--variant",
        default="int8",
        type=str,
        help="bundle variant to load (default: int8; a bundle without it serves its default variant)",
    )
    live = add_broker_options(parser, prefix="broker-", default=None, title="live view (MQTT)")
    live.add_argument(
        "--topic-prefix", default="edge-har", type=str, help="the devices' topic prefix (default: edge-har)"
    )
    live.add_argument(
        "--protocol",
        choices=["3.1.1", "5"],
        default="5",
        help="MQTT protocol version (default: 5, whose session expiry bounds what the broker keeps for serve)",
    )
    live.add_argument(
        "--client-id",
        type=str,
        metavar="ID",
        help="MQTT client id of the ingest's persistent session; one per serve on a broker "
        "(default: edge-har-serve-<host name>-<topic prefix>)",
    )
    live.add_argument(
        "--session-expiry",
        default=DEFAULT_SESSION_EXPIRY_S,
        type=_session_expiry,
        metavar="SECONDS",
        help="how long the broker keeps serve's session and queues QoS 1 predictions for it while serve is away "
        f"(within the broker's max_queued_messages); 0: a clean session (default: {DEFAULT_SESSION_EXPIRY_S})",
    )
    live.add_argument(
        "--ingest-processes",
        default=1,
        type=_processes,
        metavar="N",
        help="processes storing predictions, on one MQTT shared subscription ($share/...): the web process and "
        "N - 1 workers it starts, each about 20,000 predictions/s; PostgreSQL only beyond 1 (default: 1)",
    )
    live.add_argument(
        "--ingest-only",
        action="store_true",
        help="run one more ingest worker on the shared subscription, no web server (another host beside a serve "
        "with --ingest-processes; give it its own --worker-index); PostgreSQL only",
    )
    live.add_argument(
        "--worker-index",
        default=100,
        type=_worker_index,
        metavar="I",
        help="with --ingest-only: this worker's number, its client id is <client id>-w<I> (default: 100; the "
        "workers serve starts are 1..N-1)",
    )
    store = parser.add_argument_group("history")
    store.add_argument(
        "--db-path",
        default=DEFAULT_DB_PATH,
        type=Path,
        metavar="FILE",
        help=f"SQLite file for the prediction history (default: ./{DEFAULT_DB_PATH})",
    )
    store.add_argument(
        "--db-url",
        type=str,
        metavar="URL",
        help="SQLAlchemy URL of a PostgreSQL database instead (postgresql+psycopg://USER@HOST:PORT/DB)",
    )
    store.add_argument(
        "--retention-days",
        default=30.0,
        type=_positive_float,
        metavar="DAYS",
        help="delete stored predictions older than this (default: 30)",
    )
    store.add_argument(
        "--recordings-dir",
        type=Path,
        metavar="DIR",
        help="where the recordings devices push (edge-har record --push) are kept, as DIR/<device>/<session>/ in "
        "the recording layout, which 'edge-har convert --data DIR' reads as it is; the Label page edits their "
        f"labels there (default: {DEFAULT_RECORDINGS_DIR_NAME} beside the SQLite file; with --db-url, in the "
        "working directory)",
    )
    store.add_argument(
        "--bundle-store",
        type=Path,
        metavar="DIR",
        help="where the model bundles uploaded to /api/bundles are kept for devices to download (DIR/<id>.tar, "
        "checked and repacked on upload; at most 200 MiB each) "
        f"(default: {DEFAULT_BUNDLE_STORE_NAME} beside the SQLite file; with --db-url, in the working directory)",
    )
    parser.set_defaults(func=run)


def _whole_number(text: str, low: int, high: int, expected: str) -> int:
    """``text`` as an integer within ``low``-``high``, else ArgumentTypeError ``must be {expected}, got ...``."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
    return value


def _port(text: str) -> int:
    return _whole_number(text, 1, 65535, "a port number 1-65535")


def _session_expiry(text: str) -> int:
    from edge_har.mqtt.client import MAX_SESSION_EXPIRY_S

    return _whole_number(text, 0, MAX_SESSION_EXPIRY_S, f"whole seconds 0-{MAX_SESSION_EXPIRY_S} (30 days)")


def _processes(text: str) -> int:
    return _whole_number(text, 1, 64, "a whole number 1-64")


def _worker_index(text: str) -> int:
    return _whole_number(text, 1, 9999, "a whole number 1-9999")


def _connections(text: str) -> int:
    return _whole_number(text, 1, 100_000, "a whole number 1-100000")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and 'localhost' only reach this machine; anything else may reach a network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"--password-file {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--password-file {path}: not UTF-8 text") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise CommandError(f"--password-file {path}: the first line is empty (it holds the password)")
    return password


def build_serve_config(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` of the parsed options; :class:`CommandError` (exit 2) for a mistake."""
    password: Optional[str] = read_password(args.password_file) if args.password_file else None
    if password is None and not is_loopback(args.host) and not args.insecure_no_auth:
        raise CommandError(
            f"--host {args.host} is reachable from the network: give --password-file FILE, or --insecure-no-auth"
        )
    if password is not None and args.insecure_no_auth:
        raise CommandError("--password-file and --insecure-no-auth contradict each other; choose one")
    for bundle in args.bundle:
        if not (bundle / "bundle.json").is_file():
            raise CommandError(f"--bundle {bundle}: not a model bundle (no bundle.json)")
    mqtt = None
    if args.broker:
        from edge_har.mqtt.cli_options import build_config

        mqtt = build_config(args, prefix="broker-")
    elif args.broker_username or args.broker_password_env or args.broker_password_file or args.ca_file:
        raise CommandError("broker options without --broker: give --broker HOST[:PORT] for the live view")
    if args.client_id is not None and (not args.client_id.strip() or len(args.client_id) > 128):
        raise CommandError(f"--client-id {args.client_id[:40]!r}: must be 1-128 characters, not blank")
    several = args.ingest_processes > 1 or args.ingest_only
    flag = "--ingest-only" if args.ingest_only else f"--ingest-processes {args.ingest_processes}"
    if several and mqtt is None:
        raise CommandError(f"{flag} needs --broker HOST[:PORT]: the ingest processes share its subscription")
    if several and not (args.db_url or "").startswith("postgresql"):
        raise CommandError(
            f"{flag}: several ingest processes need PostgreSQL (--db-url postgresql+psycopg://...); SQLite "
            "takes one writer at a time"
        )
    if args.recordings_dir is not None and args.recordings_dir.exists() and not args.recordings_dir.is_dir():
        raise CommandError(f"--recordings-dir {args.recordings_dir}: exists and is not a folder")
    if args.bundle_store is not None and args.bundle_store.exists() and not args.bundle_store.is_dir():
        raise CommandError(f"--bundle-store {args.bundle_store}: exists and is not a folder")
    if args.ingest_only and args.ingest_processes > 1:
        raise CommandError("--ingest-only and --ingest-processes contradict each other: a worker is one process")
    return ServeConfig(
        host=args.host,
        port=args.port,
        bundles=tuple(args.bundle),
        variant=args.variant,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        body_idle_timeout_s=args.body_idle_timeout,
        max_connections=args.max_connections,
        password=password,
        mqtt=mqtt,
        topic_prefix=args.topic_prefix,
        db_url=args.db_url,
        db_path=args.db_path,
        retention_days=args.retention_days,
        client_id=args.client_id,
        session_expiry_s=args.session_expiry,
        ingest_processes=args.ingest_processes,
        ingest_only=args.ingest_only,
        worker_index=args.worker_index if args.ingest_only else 0,
        recordings_dir=args.recordings_dir,
        bundle_store_dir=args.bundle_store,
    )


def run(args: argparse.Namespace) -> int:
    cfg = build_serve_config(args)
    if cfg.password is None and not is_loopback(cfg.host):
        log.warning(
            "NO AUTHENTICATION on %s:%d (--insecure-no-auth): anyone who can reach this address can upload "
            "files and read every device's history",
            cfg.host,
            cfg.port,
        )
    if cfg.ingest_only:
        from edge_har.web.ingest_worker import run_worker

        log.info("edge-har serve --ingest-only: worker %d on %s", cfg.worker_index, cfg.mqtt.host if cfg.mqtt else "-")
        run_worker(cfg, cfg.worker_index, None)
        return 0
    import uvicorn

    from edge_har.web.app import create_app
    from edge_har.web.http_server import uvicorn_options

    app = create_app(cfg)
    where = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    log.info(
        "edge-har serve on http://%s:%d/ (%s; %d bundle(s); live: %s)",
        where,
        cfg.port,
        "password required" if cfg.password else "no auth",
        len(cfg.bundles),
        f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt else "no broker",
    )
    uvicorn.run(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        access_log=False,
        # an open Live page's event stream never ends: without a bound uvicorn waits for it forever,
        # the lifespan never closes the store, and systemd ends it with SIGKILL
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **uvicorn_options(cfg),  # deadlines for slow clients, bounded heads and connections
    )
    return 0
