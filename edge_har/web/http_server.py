"""How uvicorn serves ``edge-har serve``: deadlines for slow clients, bounded heads and connections.

uvicorn closes a connection that stays idle after a response (``timeout_keep_alive``), but nothing
bounds the time a client takes to send a request: a connection that sends nothing, a request head
trickled a byte at a time (slowloris), or a body announced by ``Content-Length`` and never sent each
hold a connection, and its memory, for as long as the client likes. :class:`DeadlineH11Protocol`
is uvicorn's h11 protocol with three deadlines added where the bytes arrive, so they hold for every
route, whether or not the app reads the body:

* the request head must be complete within ``header_timeout_s`` of the connection opening (or of
  the previous response on a kept-alive connection);
* a request body must arrive whole within ``body_timeout_s`` of its head, with no silence longer
  than ``body_idle_timeout_s`` (time the server itself stops reading, because the app has not yet
  taken what arrived, is not counted as silence).

A client that misses a deadline gets ``408`` with a one-line JSON ``detail`` where no response has
started yet, and the connection is closed. The head is bounded in size by h11 (a longer head is a
400), at most ``max_connections`` are open at once (uvicorn answers more with 503), and WebSocket
upgrades are off (the app has none). :func:`uvicorn_options` gives these settings to ``uvicorn.run``
and to the tests' and benchmarks' background server alike.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from edge_har.web.config import ServeConfig

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # request line and headers together (h11's default, stated here)
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this (uvicorn's default)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head and for the body (see the module doc)."""

    header_timeout_s: float = ServeConfig.header_timeout_s
    body_timeout_s: float = ServeConfig.body_timeout_s
    body_idle_timeout_s: float = ServeConfig.body_idle_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: Optional[Any] = None
        self._body_timer: Optional[Any] = None
        self._body_deadline = 0.0
        self._last_data_at = 0.0

    # ------------------------------------------------------------------ uvicorn's hooks

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data_at = self.loop.time()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()  # kept alive: the next request's head has the same deadline

    # ------------------------------------------------------------------ the deadlines

    def _await_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_due)

    def _follow_state(self) -> None:
        """Start or stop the deadlines as h11 moves from waiting for a head to a body to done."""
        state = self.conn.their_state
        if state is not h11.IDLE and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                now = self.loop.time()
                self._body_deadline = now + self.body_timeout_s
                self._last_data_at = now
                self._arm_body_timer(now)
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _arm_body_timer(self, now: float) -> None:
        due = min(self._body_deadline, self._last_data_at + self.body_idle_timeout_s)
        self._body_timer = self.loop.call_later(max(0.0, due - now), self._body_due)

    def _head_due(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        pending, _closed = self.conn.trailing_data
        if pending:  # part of a head arrived: say why; a connection that sent nothing is just closed
            self._refuse(f"the request head did not arrive within {self.header_timeout_s:g} s")
        else:
            self.transport.close()

    def _body_due(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the app has not taken what arrived: the client is not the one waiting
            self._last_data_at = now
        if now >= self._body_deadline:
            self._refuse(f"the request body did not arrive within {self.body_timeout_s:g} s")
        elif now - self._last_data_at >= self.body_idle_timeout_s:
            self._refuse(f"the request body stalled: nothing for {self.body_idle_timeout_s:g} s")
        else:
            self._arm_body_timer(now)

    def _refuse(self, why: str) -> None:
        """408 with a one-line ``detail`` where no response has started, then close the connection."""
        cycle = self.cycle
        waiting_for_head = self.conn.their_state is h11.IDLE  # self.cycle is then the previous request's
        if waiting_for_head or (cycle is not None and not cycle.response_started):
            body = json.dumps({"detail": why}).encode()
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
        if not waiting_for_head and cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() says http.disconnect; what it sends is dropped
            cycle.message_event.set()
        log.info("closing a connection from %s: %s", _peer(self.client), why)
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


def _peer(client: Optional[tuple[str, int]]) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def protocol_class(cfg: ServeConfig) -> type[DeadlineH11Protocol]:
    """:class:`DeadlineH11Protocol` with ``cfg``'s deadlines (uvicorn builds one instance per connection)."""
    for name in ("header_timeout_s", "body_timeout_s", "body_idle_timeout_s"):
        value = getattr(cfg, name)
        if not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return type(
        "ServeH11Protocol",
        (DeadlineH11Protocol,),
        {
            "header_timeout_s": cfg.header_timeout_s,
            "body_timeout_s": cfg.body_timeout_s,
            "body_idle_timeout_s": cfg.body_idle_timeout_s,
        },
    )


def uvicorn_options(cfg: ServeConfig) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.Config`` / ``uvicorn.run`` that bound what clients can hold."""
    return {
        "http": protocol_class(cfg),
        "ws": "none",
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": cfg.max_connections,
    }


def uvicorn_options_for(app: Any) -> dict[str, Any]:
    """:func:`uvicorn_options` of the app's ``state.cfg`` (``create_app`` sets it), else of the defaults."""
    cfg = getattr(getattr(app, "state", None), "cfg", None)
    return uvicorn_options(cfg if isinstance(cfg, ServeConfig) else ServeConfig())
