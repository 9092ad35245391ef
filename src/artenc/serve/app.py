"""`create_app(store_path)`: the FastAPI application of `artenc serve`.

Only wiring lives here: the state is loaded once and kept on `app.state`, endpoints
get it through `Depends` (`artenc.serve.deps`); routers, static files, middleware and
error handlers are attached; nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from artenc import __version__
from artenc.serve.limits import (
    BodySizeLimit,
    SameOriginWrites,
    SecurityHeaders,
    allowed_hosts,
    security_headers,
)
from artenc.serve.routers import api, pages
from artenc.serve.routers.pages import STATIC_DIR
from artenc.serve.state import ServeSettings, ServeState

if TYPE_CHECKING:
    from artenc.index import VectorIndex
    from artenc.runtime import Encoder

log = logging.getLogger(__name__)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Log the trace on the server; the client gets a message, never a stack trace.

    Starlette answers this 500 outside every middleware, so the security headers are added here.
    """
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error (see the server log)"}, status_code=500,
                        headers=security_headers(request.url.path))


def create_app(store_path: str, settings: ServeSettings | None = None, *, encoder: Encoder | None = None,
               index: VectorIndex | None = None) -> FastAPI:
    """Load the store at `store_path` (with its encoder and index) and build the app.

    `encoder` and `index` let tests and benchmarks reuse objects they already built.
    Raises StoreError / UsageError when the store cannot be served.
    """
    state = ServeState.open(store_path, settings, encoder=encoder, index=index)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="artenc",
        version=__version__,
        summary="Find similar paintings and explore an embedding store.",
        lifespan=lifespan,
    )
    app.state.artenc = state
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(Exception, _internal_error)
    # the last added runs first: headers on everything, then Host (400), Origin (403), size (413)
    app.add_middleware(BodySizeLimit, max_bytes=state.settings.max_upload_bytes)
    app.add_middleware(SameOriginWrites)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(extra=state.settings.allowed_hosts),
                       www_redirect=False)
    app.add_middleware(SecurityHeaders)
    return app
