"""Pytest fixtures that start a REAL mosquitto broker on a free port, and a test subscriber.

Fixtures
--------
``mosquitto_factory(**options) -> MosquittoBroker``
    Makes (and by default starts) a broker with a generated config in its own tmp directory.
    Options: ``users={name: password}`` (password file; anonymous access off), ``acl_text`` or
    ``acl_file``, ``tls=TlsFiles`` (TLS listener), ``require_certificate``, ``start=False`` (reserve
    the port only, for "broker down at start" tests), ``persistence`` (default on, autosave every
    second, so a persistent subscriber session survives a restart or a SIGKILL).
``mosquitto_broker``        anonymous broker.
``mosquitto_auth_broker``   password-protected broker; ``.users`` holds the credentials.
``mosquitto_tls_broker``    TLS broker whose CA is ``tls_files.ca_file``.
``tls_files``               (session) a CA, a server certificate for 127.0.0.1/localhost, a client
                            certificate, and an unrelated CA, made with ``cryptography`` or openssl.
``mqtt_listener(broker, topics, **options) -> Listener``
                            a paho subscriber that records messages, stopped at teardown.

A ``MosquittoBroker`` has ``host``, ``port``, ``start()`` (again on the SAME port after ``stop()``
or ``kill()``), ``stop()`` (SIGTERM), ``kill()`` (SIGKILL), ``freeze()`` (SIGSTOP) and ``log_text()``. Every broker is
stopped at teardown, and the logs of a failed test's brokers are attached to its report.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pytest

from edge_har.mqtt.local_broker import LocalBroker, find_mosquitto, free_port

SKIP_REASON = (
    "mosquitto is not installed (apt-get install mosquitto mosquitto-clients; scripts/bootstrap.sh and .ci/run "
    "install it): the MQTT tests need a real broker"
)


# ====================================================================== credentials


def mosquitto_password_line(username: str, password: str, iterations: int = 101) -> str:
    """A mosquitto 2.x password-file line (PBKDF2-SHA512, ``$7$``), as mosquitto_passwd writes it."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str], use_cli: bool = True) -> Path:
    """Write a mosquitto password file: with ``mosquitto_passwd -b`` when installed, else the hash ourselves."""
    path.unlink(missing_ok=True)
    tool = shutil.which("mosquitto_passwd") if use_cli else None
    if tool:
        first = True
        for name, password in users.items():
            args = [tool, "-c", "-b", str(path), name, password] if first else [tool, "-b", str(path), name, password]
            subprocess.run(args, check=True, capture_output=True, timeout=10)
            first = False
    else:
        path.write_text("".join(mosquitto_password_line(n, p) + "\n" for n, p in users.items()))
    path.chmod(0o600)
    return path


# ====================================================================== TLS material


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path  # a CA that signed nothing here: a client trusting it must refuse the broker


def make_tls_files(directory: Path, client_cn: str = "pi-test") -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _make_tls_files_openssl(directory, client_cn)
    return _make_tls_files_cryptography(directory, client_cn)


def _make_tls_files_cryptography(d: Path, client_cn: str) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def make_ca(cn: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def make_leaf(ca_key: Any, ca_cert: Any, cn: str, server: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = make_ca("edge-har test CA")
    server_key, server_cert = make_leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = make_leaf(ca_key, ca_cert, client_cn, server=False)
    _other_key, other_cert = make_ca("edge-har unrelated CA")

    pem = serialization.Encoding.PEM
    files = TlsFiles(
        ca_file=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
        other_ca_file=d / "other-ca.crt",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.server_key.write_bytes(key_pem(server_key))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    files.client_key.write_bytes(key_pem(client_key))
    files.other_ca_file.write_bytes(other_cert.public_bytes(pem))
    for key_file in (files.server_key, files.client_key):
        key_file.chmod(0o600)
    return files


def _make_tls_files_openssl(d: Path, client_cn: str) -> TlsFiles:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("TLS tests need the 'cryptography' package or the openssl command")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30, cwd=d)

    def ca(stem: str, cn: str) -> None:
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{stem}.key")
        run(
            "req",
            "-x509",
            "-new",
            "-key",
            f"{stem}.key",
            "-sha256",
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            f"{stem}.crt",
        )

    def leaf(stem: str, cn: str, ext: str) -> None:
        (d / f"{stem}.ext").write_text(ext)
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{stem}.key")
        run("req", "-new", "-key", f"{stem}.key", "-subj", f"/CN={cn}", "-out", f"{stem}.csr")
        run(
            "x509",
            "-req",
            "-in",
            f"{stem}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            f"{stem}.ext",
            "-out",
            f"{stem}.crt",
        )

    ca("ca", "edge-har test CA")
    ca("other-ca", "edge-har unrelated CA")
    leaf(
        "server",
        "localhost",
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    leaf("client", client_cn, "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for key_file in ("server.key", "client.key"):
        (d / key_file).chmod(0o600)
    return TlsFiles(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key", d / "other-ca.crt"
    )


# ====================================================================== the broker


class MosquittoBroker(LocalBroker):
    """One mosquitto process with a generated config; restartable on the same port.

    The package's LocalBroker (the demo's and the e2e benchmark's broker) with
    what the tests need on top: passwords, ACLs, TLS, persistence, a port retry,
    a frozen (SIGSTOP) broker and autosave waits. Process control (running,
    stop, kill, log_text) is LocalBroker's.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        users: Optional[dict[str, str]] = None,
        acl_text: Optional[str] = None,
        acl_file: Optional[Path] = None,
        tls: Optional[TlsFiles] = None,
        require_certificate: bool = False,
        allow_anonymous: Optional[bool] = None,
        persistence: bool = True,
        password_file_via_cli: bool = True,
        extra_conf: str = "",
        config_text: Optional[str] = None,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            pytest.skip(SKIP_REASON)
        self.binary = binary
        self.workdir = workdir
        self.host = host
        self._port_given = port is not None
        self.port = port if port is not None else free_port(host)
        self.users = dict(users or {})
        self.tls = tls
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.password_file: Optional[Path] = None
        self.acl_file: Optional[Path] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0

        lines = [
            "# generated by tests/plugins/broker.py",
            "per_listener_settings false",
            f"listener {self.port} {host}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # mosquitto would otherwise drop to 'mosquitto', who cannot read tmp_path
        if self.users:
            self.password_file = write_password_file(workdir / "passwd", self.users, use_cli=password_file_via_cli)
            lines.append(f"password_file {self.password_file}")
        if allow_anonymous is None:
            allow_anonymous = not self.users
        lines.append(f"allow_anonymous {'true' if allow_anonymous else 'false'}")
        if acl_text is not None:
            self.acl_file = workdir / "acl"
            self.acl_file.write_text(acl_text)
        elif acl_file is not None:
            self.acl_file = Path(acl_file)
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_file}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
        if persistence:
            lines += [
                "persistence true",
                f"persistence_location {workdir}/",
                "persistence_file mosquitto.db",
                "autosave_interval 1",
            ]
        self.db_path = workdir / "mosquitto.db" if persistence else None
        if extra_conf:
            lines.append(extra_conf)
        if config_text is not None:
            # A complete config from the caller (e.g. the shipped example with paths replaced);
            # ``port`` must be one of its listeners, the one start() waits for.
            self.db_path = None
            self.conf_path.write_text(config_text)
        else:
            self.conf_path.write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------ process control

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start mosquitto (on the same port as before, after stop()/kill()) and wait until it accepts TCP."""
        if self.running:
            return self
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                log.write(f"---- start #{self.starts + 1} on port {self.port}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [self.binary, "-c", str(self.conf_path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.starts += 1
            if self._wait_accepting(timeout):
                return self
            in_use = "Address already in use" in self.log_text()
            self._reap()
            if in_use and not self._port_given and self.starts == 1 and attempt < 2:
                # Someone took the free port between our probe and mosquitto's bind: take another.
                old = self.port
                self.port = free_port(self.host)
                text = self.conf_path.read_text().replace(f"listener {old} ", f"listener {self.port} ")
                self.conf_path.write_text(text)
                self.starts = 0
                continue
            raise RuntimeError(
                f"mosquitto did not start on {self.host}:{self.port}; its log:\n{self.log_text()[-4000:]}"
            )
        raise AssertionError("unreachable")

    def _wait_accepting(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def freeze(self) -> None:
        """SIGSTOP: a hung broker. TCP stays open (the kernel still acknowledges segments) but
        nothing is processed or acknowledged at the MQTT level until ``kill()``."""
        assert self.proc is not None and self.proc.poll() is None, "broker is not running"
        self.proc.send_signal(signal.SIGSTOP)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(5)
        self.proc = None

    def wait_autosaved(self, since: float, timeout: float = 5.0) -> None:
        """Wait until the persistence db was written after ``since`` (time.time()), e.g. after a subscribe."""
        assert self.db_path is not None, "broker made with persistence=False"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.db_path.exists() and self.db_path.stat().st_mtime > since:
                return
            time.sleep(0.05)
        raise AssertionError(f"mosquitto did not autosave {self.db_path} within {timeout} s")

    def __repr__(self) -> str:
        return f"MosquittoBroker({self.host}:{self.port}, running={self.running}, tls={self.tls is not None})"


# ====================================================================== a test subscriber


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float = field(default_factory=time.monotonic)
    properties: Any = None  # MQTT 5 PUBLISH properties (MessageExpiryInterval, ...); None under 3.1.1

    def json(self) -> Any:
        return json.loads(self.payload)


class Listener:
    """A paho subscriber for assertions: records every message; ``wait_for`` blocks on a condition."""

    def __init__(
        self,
        broker: MosquittoBroker,
        topics: Iterable[str],
        *,
        client_id: Optional[str] = None,
        clean: bool = True,
        qos: int = 1,
        protocol: str = "3.1.1",
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[Path] = None,
        connect_timeout: float = 10.0,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.topics = list(topics)
        self.qos = qos
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._connected_once = threading.Event()
        kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2}
        kwargs["client_id"] = client_id or f"test-listener-{os.getpid()}-{id(self)}"
        if protocol == "5":
            kwargs["protocol"] = mqtt.MQTTv5
        else:
            kwargs["protocol"] = mqtt.MQTTv311
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(**kwargs)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(connect_timeout):
            self.close()
            raise AssertionError(
                f"test listener could not subscribe to {self.topics} on {broker}:\n{broker.log_text()[-3000:]}"
            )

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            return
        self._connected_once.set()
        # Subscriptions do not survive a broker restart without persistence: always re-subscribe.
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._cond:
            self.messages.append(
                Received(
                    message.topic,
                    bytes(message.payload),
                    bool(message.retain),
                    message.qos,
                    properties=getattr(message, "properties", None),
                )
            )
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[Any]:
        return [m.json() for m in self.on(topic)]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0, what: str = ""
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(m.topic, m.payload[:80]) for m in self.messages[-10:]]
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what or predicate}; last messages: {got}\n"
                        f"broker log:\n{self.broker.log_text()[-3000:]}"
                    )
                self._cond.wait(min(remaining, 0.1))
            return list(self.messages)

    def wait_count(self, topic: str, n: int, timeout: float = 10.0) -> list[Received]:
        self.wait_for(lambda ms: sum(m.topic == topic for m in ms) >= n, timeout, f"{n} messages on {topic}")
        return self.on(topic)

    def wait_last(self, topic: str, payload: bytes, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Wait until ``payload`` is the latest message on ``topic`` and has arrived ``count`` times.

        A process that has exited has handed its last message to the broker, not to this listener:
        the broker's delivery to us runs behind, so a check straight after a stop must wait for it.
        """

        def done(ms: list[Received]) -> bool:
            mine = [m.payload for m in ms if m.topic == topic]
            return bool(mine) and mine[-1] == payload and mine.count(payload) >= count

        self.wait_for(done, timeout, f"{payload!r} x{count} last on {topic}")
        return self.on(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ====================================================================== fixtures


@pytest.fixture
def mosquitto_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Make brokers: ``mosquitto_factory(users=..., tls=..., start=True) -> MosquittoBroker``."""
    if find_mosquitto() is None:
        pytest.skip(SKIP_REASON)
    brokers: list[MosquittoBroker] = []
    request.node._edge_har_brokers = brokers  # read by pytest_runtest_makereport below

    def make(*, start: bool = True, **options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"), **options)
        brokers.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto_broker(mosquitto_factory) -> MosquittoBroker:
    """An anonymous broker on a free port (with persistence, autosaved every second)."""
    return mosquitto_factory()


TEST_USERS = {"pi-test": "s3cret-pi-test", "viewer": "viewer-pw", "pi-other": "other-pw"}


@pytest.fixture
def mosquitto_auth_broker(mosquitto_factory) -> MosquittoBroker:
    """A broker that requires a username/password (``broker.users``); no ACL."""
    return mosquitto_factory(users=TEST_USERS)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mosquitto_tls_broker(mosquitto_factory, tls_files: TlsFiles) -> MosquittoBroker:
    """A TLS-only broker whose server certificate (127.0.0.1, localhost) is signed by ``tls_files.ca_file``."""
    return mosquitto_factory(tls=tls_files)


@pytest.fixture
def mqtt_listener(request: pytest.FixtureRequest):
    """``mqtt_listener(broker, ["edge-har/#"], **options) -> Listener``; closed at teardown."""
    listeners: list[Listener] = []

    def make(broker: MosquittoBroker, topics: Iterable[str], **options: Any) -> Listener:
        listener = Listener(broker, topics, **options)
        listeners.append(listener)
        return listener

    yield make
    for listener in listeners:
        listener.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for broker in getattr(item, "_edge_har_brokers", []):
            report.sections.append((f"mosquitto log ({broker.host}:{broker.port})", broker.log_text()[-6000:]))
