"""What `artenc serve` accepts: allowed hosts and origins, request body size, security headers
on every response, and the limits handed to uvicorn.

The policy, outermost first (see `app.create_app`): `SecurityHeaders` on every response,
errors included; Starlette's `TrustedHostMiddleware` (400 for a Host header that is not an
allowed host: DNS rebinding); `SameOriginWrites` (403 for a request other than GET/HEAD sent
by a page of another origin); `BodySizeLimit` (413).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import URL, Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # always allowed in the Host header
SAFE_METHODS = frozenset({"GET", "HEAD"})  # read-only requests: no Origin check

# uvicorn has no time limit for reading a request's headers (uvicorn issue #157,
# `--timeout-request-start`, never implemented; its keep-alive timer is cancelled by the first
# byte of a request and is not armed on a new connection). The closest settings it supports,
# passed by `artenc serve`: idle keep-alive connections close after `timeout_keep_alive`
# seconds, an incomplete request head larger than `h11_max_incomplete_event_size` bytes is
# answered 400 and closed, and at most `limit_concurrency` connections and requests are held
# at once (the next get 503), which bounds what slow clients can hold. Put a reverse proxy
# with a header timeout (nginx `client_header_timeout`) in front of a page open to a network.
SERVER_LIMITS = {"timeout_keep_alive": 5, "h11_max_incomplete_event_size": 16 * 1024,
                 "limit_concurrency": 256}


def allowed_hosts(host: str | None = None, extra: Iterable[str] = ()) -> list[str]:
    """The Host header values `artenc serve` answers: the loopback names, the interface it binds
    (`host`) and `extra` names, lowercase, without duplicates, IPv6 addresses in brackets as
    they appear in a Host header ("[::1]"); the patterns of Starlette's TrustedHostMiddleware
    ("*.example.org", or "*" for any host)."""
    names = []
    for name in (*LOOPBACK_HOSTS, *([host] if host else []), *extra):
        name = name.strip().lower().removeprefix("[").removesuffix("]")
        names.append(f"[{name}]" if ":" in name else name)
    return list(dict.fromkeys(names))


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, (host or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class SameOriginWrites:
    """403 for any request but GET/HEAD whose `Origin` header names another origin.

    Browsers send `Origin` with every cross-origin request and every same-origin POST, so a
    web page elsewhere cannot make a visitor's browser upload to this server (forms and
    `fetch` with `no-cors` need no CORS permission to send). The origin allowed is the
    request's own: same scheme, host and port as its (already checked) Host header. Requests
    without `Origin` (curl, scripts) are let through. RFC 6454 (origins), Fetch standard
    (`Origin` header).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            origin = Headers(scope=scope).get("origin")
            if origin is not None and not self.same_origin(origin, scope):
                await _send_json(send, 403, f"cross-origin request refused: {origin[:100]} is not this "
                                 "server's origin")
                return
        await self.app(scope, receive, send)

    @staticmethod
    def same_origin(origin: str, scope: Scope) -> bool:
        """Whether the `Origin` header value is the origin the request was sent to."""
        try:
            parts = urlsplit(origin)
            theirs = _origin(parts.scheme, parts.hostname, parts.port)
        except ValueError:  # a port out of range, brackets that do not close
            return False
        url = URL(scope=scope)
        return parts.path in ("", "/") and theirs == _origin(url.scheme, url.hostname, url.port)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"upload too large: the limit is {limit / 2**20:.1f} MB")


class BodySizeLimit:
    """Refuse request bodies over `max_bytes`: by Content-Length up front, else while streaming.

    The streaming check raises an HTTPException(413) from `receive`, which FastAPI passes
    through its form parsing, so chunked uploads without a length are cut off too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, _too_large(self.max_bytes).detail)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Send, status: int, detail: str) -> None:
    """A JSON error answered from middleware ({"detail": ...}, like FastAPI's), closing the connection."""
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
RELAXED_PREFIXES = ("/docs", "/redoc")  # FastAPI's pages load their viewer from a CDN


def security_headers(path: str) -> dict[str, str]:
    """The headers of every response to `path`: nosniff, no framing, no referrer, and the strict
    Content-Security-Policy except under /docs and /redoc (whose CDN scripts it would block)."""
    headers = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
    if not path.startswith(RELAXED_PREFIXES):
        headers["content-security-policy"] = PAGE_POLICY
    return headers


class SecurityHeaders:
    """`security_headers` on every response that passes through, errors included (400, 403,
    404, 413, 415, 422). The 500 of an unexpected error is answered outside all middleware
    (Starlette's ServerErrorMiddleware), so `app._internal_error` adds the same headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.encode(), v.encode()) for k, v in security_headers(scope["path"]).items()]
        names = {k for k, _ in extra}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, with_headers)
