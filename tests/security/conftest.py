"""A real uvicorn on 127.0.0.1 serving the app over a small index built with the hash embedder."""
from __future__ import annotations

import pytest

from tests.conftest import SMALL_REG, write
from tests.fakes import HashEmbedder
from tests.live import LiveServer


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
