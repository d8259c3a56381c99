"""Slow clients against a real uvicorn serving ``edge-har serve``: every half-sent request is closed in time.

Raw sockets on the real server (``web_server``, run with the protocol ``edge-har serve`` uses): a
connection that sends nothing, a head trickled a byte at a time (slowloris), a body announced by
``Content-Length`` and never sent, a body trickled slower than the deadline allows, a body owed to a
route that never reads it, and a kept-alive connection that starts a second head and stalls. Each is
closed within its deadline (plus scheduling slack), with a one-line 408 where a response could still
be sent, and the server answers everyone else meanwhile.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest

pytest.importorskip("fastapi")

from edge_har.cli import main  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.serve_cli import build_serve_config  # noqa: E402

HEAD_S = 1.0
BODY_S = 3.0
IDLE_S = 1.0
SLACK_S = 1.5  # event-loop scheduling on a loaded 2-core machine
BOUNDARY = "edgeharboundary"


@pytest.fixture
def server(web_server) -> Any:
    return web_server(
        ServeConfig(header_timeout_s=HEAD_S, body_timeout_s=BODY_S, body_idle_timeout_s=IDLE_S, max_connections=20)
    )


def connect(server: Any, timeout: float = 15.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (perf_counter)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.perf_counter()


def assert_408(reply: bytes, *words: str) -> None:
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    detail = json.loads(body)["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for word in words:
        assert word in detail, (word, detail)


def still_serving(server: Any) -> None:
    with urllib.request.urlopen(server.url + "/api/info", timeout=10) as r:
        assert r.status == 200


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        started = time.perf_counter()
        reply, closed = read_until_closed(sock)
    assert reply == b"" and closed - started < HEAD_S + SLACK_S
    still_serving(server)


def test_a_trickled_head_gets_408_within_the_header_deadline(server):
    with connect(server) as sock:
        started = time.perf_counter()
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.25)
        reply = b""
        for byte in b"X-Slow: " + b"a" * 200:  # one byte per 0.25 s: 50 s for the head, if nobody stopped it
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                more = sock.recv(65536)
            except socket.timeout:
                continue
            reply += more
            if not more or b"}" in reply:
                break
        closed = time.perf_counter()
    assert closed - started < HEAD_S + SLACK_S, closed - started
    assert_408(reply, "head", f"{HEAD_S:g} s")
    still_serving(server)


def multipart_head(length: int) -> bytes:
    return (
        f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_announced_and_never_sent_gets_408_after_the_idle_deadline(server):
    with connect(server) as sock:
        started = time.perf_counter()
        sock.sendall(multipart_head(100_000) + f"--{BOUNDARY}\r\n".encode())
        reply, closed = read_until_closed(sock)
    assert IDLE_S - 0.2 < closed - started < IDLE_S + SLACK_S, closed - started
    assert_408(reply, "body", "stalled")
    still_serving(server)


def test_a_trickled_body_is_closed_at_the_body_deadline(server):
    """A byte every half idle deadline never stalls, but the whole body has BODY_S seconds."""
    with connect(server) as sock:
        started = time.perf_counter()
        part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        sock.sendall(multipart_head(100_000) + part.encode())
        sock.settimeout(IDLE_S / 2)
        reply = b""
        while time.perf_counter() - started < BODY_S + 10:
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                more = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            reply += more
            if not more:
                break
        closed = time.perf_counter()
    assert BODY_S - 0.2 < closed - started < BODY_S + SLACK_S, closed - started
    assert_408(reply, "body", f"{BODY_S:g} s")


def test_a_body_owed_to_a_route_that_never_reads_it_is_not_waited_for(server):
    """GET /api/info answers at once; the body it announced but never sent does not keep the connection."""
    with connect(server) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        started = time.perf_counter()
        reply, closed = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert closed - started < IDLE_S + SLACK_S, closed - started


def test_a_kept_alive_connection_that_stalls_in_its_next_head_is_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"auth"' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.perf_counter()
        sock.sendall(b"GET /api/in")  # within the keep-alive time, then nothing more
        reply, closed = read_until_closed(sock)
    assert closed - started < HEAD_S + SLACK_S, closed - started
    assert_408(reply, "head")


def test_prompt_clients_are_unaffected_and_keep_alive_works(server):
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while b'"auth"' not in reply:
                reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(HEAD_S * 0.6)  # pauses between requests within the keep-alive time are fine
    with connect(server) as sock:  # a body sent in pieces, each within the idle deadline
        part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n1 2 3\r\n'
        body = (part + f"--{BOUNDARY}--\r\n").encode()
        sock.sendall(multipart_head(len(body)))
        for i in range(0, len(body), 20):
            sock.sendall(body[i : i + 20])
            time.sleep(IDLE_S * 0.3)
        reply = b""
        while b"}" not in reply:
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]  # no bundle loaded: a one-line 400, not a 408
    assert b"no bundle" in reply


def test_slow_clients_do_not_hold_up_others(server):
    stalled = [connect(server) for _ in range(10)]
    try:
        for sock in stalled:
            sock.sendall(b"GET /api/info HTTP/1.1\r\nHo")
        started = time.perf_counter()
        still_serving(server)
        assert time.perf_counter() - started < 1.0
    finally:
        for sock in stalled:
            sock.close()


def test_connections_beyond_the_limit_get_503(web_server):
    server = web_server(ServeConfig(max_connections=4, header_timeout_s=5.0))
    held = [connect(server) for _ in range(4)]
    try:
        time.sleep(0.2)
        with connect(server) as sock:
            sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    still_serving(server)


def test_an_over_long_head_is_a_400(server):
    """A head still incomplete past 16 KiB is refused (h11's bound; one that arrives whole is one socket read)."""
    with connect(server) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        time.sleep(0.2)
        try:
            sock.sendall(b"a" * 20_000 + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply, _ = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    still_serving(server)


# ---------------------------------------------------------------------- the command line


def serve_args(*extra: str) -> Any:
    import argparse

    from edge_har.web import serve_cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    serve_cli.register(sub)
    return parser.parse_args(["serve", *extra])


def test_the_deadlines_are_options_with_defaults():
    cfg = build_serve_config(serve_args())
    assert (cfg.header_timeout_s, cfg.body_timeout_s, cfg.body_idle_timeout_s, cfg.max_connections) == (
        ServeConfig.header_timeout_s,
        ServeConfig.body_timeout_s,
        ServeConfig.body_idle_timeout_s,
        ServeConfig.max_connections,
    )
    cfg = build_serve_config(
        serve_args(
            "--header-timeout", "3", "--body-timeout", "30", "--body-idle-timeout", "2", "--max-connections", "9"
        )
    )
    assert (cfg.header_timeout_s, cfg.body_timeout_s, cfg.body_idle_timeout_s, cfg.max_connections) == (3, 30, 2, 9)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--header-timeout", "0"),
        ("--header-timeout", "inf"),
        ("--body-timeout", "-1"),
        ("--body-idle-timeout", "nan"),
        ("--max-connections", "0"),
        ("--max-connections", "many"),
    ],
)
def test_bad_deadlines_are_refused_in_one_line(capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(["serve", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in err and value in err
