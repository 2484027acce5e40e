"""Shared fixtures. Real servers (embedded Argilla, local Hub API) are started by session fixtures
in the modules named below; nothing the user relies on is mocked."""

from __future__ import annotations

from pathlib import Path

import pytest

# Must stay first among Hub-related imports: sets HF_ENDPOINT/HF_HOME/HF_TOKEN/HF_HUB_DISABLE_XET before
# any test module imports huggingface_hub or datasets, and provides the `hub_server` / `hub` fixtures.
from hub_fixtures import hub, hub_server  # noqa: F401


@pytest.fixture(autouse=True)
def pickloop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes under its own PICKLOOP_HOME, never the user's."""
    home = tmp_path / "pickloop-home"
    monkeypatch.setenv("PICKLOOP_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def argilla_stack(tmp_path_factory: pytest.TempPathFactory):
    """The real embedded Argilla stack (server, redis, rq worker, SQLite search engine) on a free port.

    Shared by the whole session: tests use unique dataset, workspace and user names.
    """
    from argilla_setup import server

    home = tmp_path_factory.mktemp("argilla-home")
    info = server.start(home, port=server.free_port())
    try:
        yield info
    finally:
        server.stop(home)


_MARK_BY_FIXTURE = {
    "argilla_stack": "argilla",
    "env": "argilla",
    "hub_server": "hub",
    "hub": "hub",
    "tiny_model": "train",
    "trained_round": "train",
    "seed_round": "train",
}
_MARK_BY_MODULE = {
    "test_browser": ("browser", "argilla"),
    "test_demo": ("e2e", "argilla", "train"),
    "test_resume": ("e2e", "argilla", "train"),
    "test_server": ("argilla",),
    "test_security": ("argilla",),
    "test_patches": ("argilla",),
    "test_train": ("train",),
    "test_generate": ("train",),
    "test_tiny_model": ("train",),
    "test_packaging": ("e2e",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from what a test needs (its fixtures, its module), so `make test-fast` can leave out
    every test that starts a server, trains, drives a browser or runs the whole loop."""
    for item in items:
        names = set(_MARK_BY_MODULE.get(item.module.__name__.rsplit(".", 1)[-1], ()))
        names |= {_MARK_BY_FIXTURE[f] for f in getattr(item, "fixturenames", ()) if f in _MARK_BY_FIXTURE}
        for name in names:
            item.add_marker(getattr(pytest.mark, name))
