"""Session fixture for the local Hub API server, and the client environment it needs.

`huggingface_hub` and `datasets` read `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_DISABLE_XET`... once, at import
(`huggingface_hub.constants.ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE`, `HF_URL_HOSTS`, `HF_HUB_CACHE`,
`datasets.config.HF_ENDPOINT`, `HUB_DATASETS_URL`, `HF_DATASETS_CACHE`, ...). So importing this module
(tests/conftest.py does, before any test module is collected) binds the server's socket first, to know
its port, and sets those variables for the whole session; the server itself starts on that socket
only when a test asks for `hub_server`. Until then the endpoint refuses connections, so no test can
reach the real Hub by accident. If the libraries were imported earlier anyway, the cached constants
are patched to the same values (`point_clients_at`).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_api_server import HubServer

HUB_USER = "tester"
HUB_TOKEN = "hf_test" + secrets.token_hex(12)

_SOCK = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_SOCK.bind(("127.0.0.1", 0))
HUB_ENDPOINT = f"http://127.0.0.1:{_SOCK.getsockname()[1]}"
_HF_HOME = Path(tempfile.mkdtemp(prefix="pickloop-hf-home-"))
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)


def point_clients_at(endpoint: str, hf_home: Path, token: str) -> None:
    """Set the env the Hub clients read, and patch their import-time copies if already imported."""
    os.environ.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_TOKEN=token,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    for name in ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE"):  # all under HF_HOME
        os.environ.pop(name, None)
    if "huggingface_hub" in sys.modules:
        from urllib.parse import urlsplit

        from huggingface_hub import constants

        constants.ENDPOINT = endpoint
        constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        constants.HF_URL_HOSTS = constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname}
        constants.HF_HUB_DISABLE_XET = True
        constants.HF_HOME = str(hf_home)
        constants.HF_HUB_CACHE = str(hf_home / "hub")
        constants.HF_ASSETS_CACHE = str(hf_home / "assets")
        constants.HF_TOKEN_PATH = str(hf_home / "token")
        constants.HF_STORED_TOKENS_PATH = str(hf_home / "stored_tokens")
    if "datasets" in sys.modules:
        from datasets import config

        config.HF_ENDPOINT = endpoint
        config.HUB_DATASETS_URL = endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
        config.HF_CACHE_HOME = str(hf_home)
        config.HF_DATASETS_CACHE = hf_home / "datasets"


point_clients_at(HUB_ENDPOINT, _HF_HOME, HUB_TOKEN)


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """The local Hub API server at `HF_ENDPOINT`, with one user (`HUB_USER`) whose token is `HF_TOKEN`."""
    point_clients_at(HUB_ENDPOINT, _HF_HOME, HUB_TOKEN)  # in case a test module imported the libs first
    server = HubServer(tmp_path_factory.mktemp("hub-store"), tokens={HUB_TOKEN: HUB_USER}, sock=_SOCK)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift an HF_HUB_OFFLINE the environment may set, for one test: the local server is the Hub here."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    from datasets import config
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(config, "HF_DATASETS_OFFLINE", False)


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The session's Hub server with a clean request log and no pending failures; HF_TOKEN restored,
    offline mode lifted for the test."""
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    _online(monkeypatch)
    hub_server.app.reset()
    yield hub_server
    hub_server.app.reset()
