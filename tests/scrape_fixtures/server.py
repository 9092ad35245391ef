"""A threaded HTTP server on 127.0.0.1 serving a route table, with scripted faults."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What one path answers: `fail_first` 500s before succeeding, after `delay` seconds."""

    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    fail_first: int = 0
    delay: float = 0.0


class FixtureServer:
    """Serve `routes` (path -> Route) until `close()`; counts hits per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, path: str) -> tuple[Route, int]:
        with self._lock:
            self.hits[path] += 1
            hit = self.hits[path]
        route = self.routes.get(path) or Route(b"not found", "text/plain", 404)
        status = 500 if hit <= route.fail_first else route.status
        return route, status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                route, status = server._answer(self.path)
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
