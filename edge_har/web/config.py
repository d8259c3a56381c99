"""What ``edge-har serve`` was asked to do, parsed once from the command line and passed down.

The prediction side (``predict.py``) and the live side (``live.py``, ``store.py``) both read this one
object, so neither re-parses options and the tests can build an app without a command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # the MQTT client stack is only needed when --broker is given
    from edge_har.mqtt.config import MqttConfig

DEFAULT_PORT = 8321
# How long a stopping server waits for open requests: event streams stay open until the browser
# leaves, so an unbounded wait would hold a SIGTERM until systemd's SIGKILL.
GRACEFUL_SHUTDOWN_S = 2
DEFAULT_DB_PATH = Path("edge-har-web.sqlite3")
DEFAULT_SESSION_EXPIRY_S = 86400  # a day: a weekend outage of serve is beyond the broker's queue anyway
DEFAULT_RECORDINGS_DIR_NAME = "edge-har-recordings"  # beside the SQLite file unless --recordings-dir says
DEFAULT_BUNDLE_STORE_NAME = "edge-har-bundles"  # beside the SQLite file unless --bundle-store says


@dataclass(frozen=True)
class ServeConfig:
    """Every option of ``edge-har serve``.

    ``mqtt`` is None when no broker was given: the app then serves prediction only and the live page
    says so. ``db_url`` (an SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``) wins over
    ``db_path`` (SQLite, the default). ``password`` is the shared secret for HTTP basic auth or a
    bearer token; None means no auth, which ``serve_cli`` allows only on loopback or with
    ``--insecure-no-auth``.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    bundles: tuple[Path, ...] = ()
    variant: str = "int8"
    max_upload_bytes: int = 20 * 1024 * 1024
    # Slow clients (edge_har.web.http_server): a request head must be whole within header_timeout_s, a body
    # within body_timeout_s with no silence over body_idle_timeout_s; more than max_connections get a 503.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 120.0
    body_idle_timeout_s: float = 15.0
    max_connections: int = 500
    password: Optional[str] = field(default=None, repr=False)
    mqtt: Optional[MqttConfig] = None
    topic_prefix: str = "edge-har"
    db_url: Optional[str] = None
    db_path: Path = DEFAULT_DB_PATH
    retention_days: float = 30.0
    # The ingest's MQTT session: a fixed client id (None: edge-har-serve-<host>-<topic prefix>) whose session
    # the broker keeps this long while serve is away, QoS 1 predictions included; 0: a clean session.
    client_id: Optional[str] = None
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    # Ingest processes on one shared subscription to the predictions (PostgreSQL only beyond 1); the web process
    # is one of them and starts the others (edge_har.web.ingest_worker). ingest_only: this process is such a
    # worker (no web server, no status or stats), worker_index its number (its client id is <client id>-w<i>).
    ingest_processes: int = 1
    ingest_only: bool = False
    worker_index: int = 0
    # Where uploaded recordings are kept (DIR/<device>/<session>/, the recording layout); None: beside the
    # SQLite file (``recordings_root``).
    recordings_dir: Optional[Path] = None
    # Where the model bundles devices download are kept (DIR/<id>.tar and <id>.json); None: beside the SQLite file
    # (``bundle_store_root``). An upload is at most max_bundle_bytes and unpacks to at most 4 times that.
    bundle_store_dir: Optional[Path] = None
    max_bundle_bytes: int = 200 * 1024 * 1024


def recordings_root(cfg: ServeConfig) -> Path:
    """The folder of the recordings store: ``cfg.recordings_dir``, else ``edge-har-recordings`` beside the SQLite
    file (the one of an ``sqlite:///`` ``db_url`` too), else in the working directory (PostgreSQL)."""
    if cfg.recordings_dir is not None:
        return Path(cfg.recordings_dir).expanduser()
    return _beside_the_db(cfg, DEFAULT_RECORDINGS_DIR_NAME)


def bundle_store_root(cfg: ServeConfig) -> Path:
    """The folder of the bundle store: ``cfg.bundle_store_dir``, else ``edge-har-bundles`` where
    :func:`recordings_root` puts ``edge-har-recordings`` (beside the SQLite file, else the working directory)."""
    if cfg.bundle_store_dir is not None:
        return Path(cfg.bundle_store_dir).expanduser()
    return _beside_the_db(cfg, DEFAULT_BUNDLE_STORE_NAME)


def _beside_the_db(cfg: ServeConfig, name: str) -> Path:
    """``name`` beside the SQLite file (the one of an ``sqlite:///`` ``db_url`` too), else in the working directory."""
    if cfg.db_url:
        prefix = "sqlite:///"
        if cfg.db_url.startswith(prefix) and len(cfg.db_url) > len(prefix):
            return Path(cfg.db_url[len(prefix) :].split("?", 1)[0]).expanduser().parent / name
        return Path(name)
    return Path(cfg.db_path).expanduser().parent / name
