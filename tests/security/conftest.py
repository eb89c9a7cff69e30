"""A real uvicorn on 127.0.0.1 serving the app over a small index built with the hash embedder."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import SMALL_REG, write
from tests.fakes import HashEmbedder
from tests.live import LiveServer, stop_all


@pytest.fixture(scope="session")
def small_index(tmp_path_factory):
    """The small regulation, ingested once; each module gets a copy of this index to change as it likes."""
    from assistant.components import build_pipeline
    from assistant.settings import Settings

    d = tmp_path_factory.mktemp("sec-template")
    write(d / "docs" / "parking.txt", SMALL_REG)
    s = Settings(_env_file=None)
    s.store.index_dir = str(d / "index")
    s.store.collection = "sec"
    report = build_pipeline(s, embedder=HashEmbedder()).run([d / "docs" / "parking.txt"])
    assert report.documents[0].status == "added"
    return d / "index"


@pytest.fixture(scope="module")
def small_settings(small_index, tmp_path_factory):
    from assistant.settings import Settings

    index = tmp_path_factory.mktemp("sec") / "index"
    shutil.copytree(small_index, index)
    s = Settings(_env_file=None)
    s.store.index_dir = str(index)
    s.store.collection = "sec"
    return s


@pytest.fixture(scope="module")
def live(small_settings):
    """Factory: a live server with the given server settings (API keys, UI login...), one per set of settings in
    a module; `ui=False` serves the API alone (for tests of the API, which skip building the chat page)."""
    from assistant.api import create_app
    from assistant.service import build_assistant

    servers: dict[str, LiveServer] = {}

    def start(ui: bool = True, **server) -> LiveServer:
        key = repr((ui, sorted(server.items())))
        if key not in servers:
            s = small_settings.model_copy(deep=True)
            for k, v in server.items():
                setattr(s.server, k, v)
            servers[key] = LiveServer(create_app(s, build_assistant(s, embedder=HashEmbedder()), with_ui=ui))
        return servers[key]

    yield start
    stop_all(list(servers.values()))
