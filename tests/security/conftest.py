"""A real uvicorn on 127.0.0.1 serving the app over a small index built with the hash embedder."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from tests.conftest import SMALL_REG, write
from tests.fakes import HashEmbedder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread; `url` is its base address."""

    def __init__(self, app) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def small_settings(tmp_path_factory):
    from assistant.components import build_pipeline
    from assistant.settings import Settings

    d = tmp_path_factory.mktemp("sec")
    write(d / "docs" / "parking.txt", SMALL_REG)
    s = Settings(_env_file=None)
    s.store.index_dir = str(d / "index")
    s.store.collection = "sec"
    report = build_pipeline(s, embedder=HashEmbedder()).run([d / "docs" / "parking.txt"])
    assert report.documents[0].status == "added"
    return s


@pytest.fixture(scope="module")
def live(small_settings):
    """Factory: a live server with the given server settings (API keys, UI login...)."""
    from assistant.api import create_app
    from assistant.service import build_assistant

    servers = []

    def start(**server) -> LiveServer:
        s = small_settings.model_copy(deep=True)
        for k, v in server.items():
            setattr(s.server, k, v)
        srv = LiveServer(create_app(s, build_assistant(s, embedder=HashEmbedder())))
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
