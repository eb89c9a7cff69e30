"""A real uvicorn on 127.0.0.1 in a thread, for the tests that talk to the app over HTTP or through a browser."""
from __future__ import annotations

import functools
import socket
import ssl
import threading
import time

import httpx
import uvicorn

# httpx builds a TLS context for every module-level call (~40 ms: it reads the CA bundle), though every server the
# tests talk to is plain HTTP on 127.0.0.1; a few hundred calls made that seconds of the suite.
_TLS = ssl.create_default_context()


class _Http:
    """`http.get(...)`, `http.post(...)`, `http.stream(...)`: httpx's own calls (a fresh client each, no cookies
    kept between calls) with that one TLS context."""

    def __getattr__(self, name: str):
        return functools.partial(getattr(httpx, name), verify=_TLS)


http = _Http()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread; `url` is its base address."""

    def __init__(self, app, port: int | None = None) -> None:
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    timeout_graceful_shutdown=0.5))  # open streams: no reason to wait
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        stop_all([self])


def stop_all(servers: list[LiveServer]) -> None:
    """Asks every server to exit, then waits for them: they shut down side by side."""
    for srv in servers:
        srv.server.should_exit = True
    for srv in servers:
        srv.thread.join(10)
