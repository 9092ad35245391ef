"""ASGI middleware: request body size limit (413) and security headers on every response."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


PAGE_POLICY = (b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    """nosniff and no framing everywhere; a strict Content-Security-Policy except on /docs.

    FastAPI's /docs and /redoc pages load their scripts from a CDN with inline code, so
    the strict policy would blank them; they get no CSP.
    """

    def __init__(self, app: ASGIApp, relaxed_prefixes: tuple[str, ...] = ("/docs", "/redoc")) -> None:
        self.app = app
        self.relaxed = relaxed_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        strict = not scope["path"].startswith(self.relaxed)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"no-referrer")]
                if strict:
                    headers.append((b"content-security-policy", PAGE_POLICY))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
