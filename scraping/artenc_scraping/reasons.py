"""One short human-readable reason for a failed request, shared by spiders and pipelines."""

from __future__ import annotations

import re

from scrapy.pipelines.media import FileException
from twisted.python.failure import Failure

_OBJECT_REPR = re.compile(r" <[\w.]+ object at 0x[0-9a-f]+>")


def reason(error: BaseException | Failure) -> str:
    """`HTTP 404`, `TimeoutError: ...`, or the exception's message."""
    exc = error.value if isinstance(error, Failure) else error
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status", 200) != 200:
        return f"HTTP {response.status}"
    message = _OBJECT_REPR.sub("", str(exc)).strip()
    if isinstance(exc, FileException):
        return message or "download failed"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
