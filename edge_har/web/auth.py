"""One shared secret in front of every route: HTTP basic auth (any user name) or a bearer token.

Written as a plain ASGI middleware rather than a FastAPI dependency so that nothing can be
served around it: the pages, ``/static``, the OpenAPI schema and the server-sent event stream
all pass through the same check, and a route added later is covered without remembering to.
A browser asks for the password once (the ``WWW-Authenticate`` challenge) and then sends it with
every request of the page, ``EventSource`` included, so the live page needs no token in its URL.
The comparison is constant-time (:func:`hmac.compare_digest`) so a wrong guess leaks nothing
about how much of it was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any, Awaitable, Callable, Collection, MutableMapping, Optional

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REALM = "edge-har"


def offered_secret(authorization: Optional[str]) -> Optional[str]:
    """The secret an ``Authorization`` header carries (basic: the password part; bearer: the token)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def secret_matches(offered: Optional[str], password: str) -> bool:
    """Constant-time comparison of what the client sent with the configured password."""
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode("utf-8"), password.encode("utf-8"))


class SharedSecretAuth:
    """ASGI middleware: every HTTP and WebSocket request needs ``password`` (basic or bearer).

    ``open_paths`` are answered without it, matched exactly (no prefix, no trailing slash): a health probe
    that an orchestrator sends without credentials, and which says nothing but ok or not.
    """

    def __init__(self, app: ASGIApp, password: str, open_paths: Collection[str] = ()) -> None:
        if not password:
            raise ValueError("an empty password would let anyone in; leave auth off instead")
        self.app = app
        self.password = password
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if secret_matches(offered_secret(headers.get("authorization")), self.password):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        why = "wrong credentials" if "authorization" in headers else "credentials required"
        body = json.dumps({"detail": f"{why}: HTTP basic auth (any user name) or a bearer token"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
