"""The Argilla connection a phase gets: `argilla.api_key_file` is read for a remote `api_url`."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.config import parse_config
from loop.context import argilla_connection
from loop.errors import ConfigError

BASE = {"run": {"name": "t"}, "data": {"path": "d.jsonl"}, "model": {"name_or_path": "m"}}


def config(tmp_path: Path, **argilla):
    return parse_config({**BASE, "argilla": argilla}, base_dir=tmp_path)


def test_remote_api_url_reads_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    key = tmp_path / "argilla.key"
    key.write_text("remote-key-123\n")
    key.chmod(0o600)
    conn = argilla_connection(config(tmp_path, api_url="http://127.0.0.1:6999", api_key_file=str(key)))
    assert (conn.api_url, conn.api_key) == ("http://127.0.0.1:6999", "remote-key-123")
    monkeypatch.setenv("ARGILLA_API_KEY", "from-env")
    assert argilla_connection(config(tmp_path, api_url="http://127.0.0.1:6999", api_key_file=str(key))).api_key == "from-env"


def test_key_file_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    key = tmp_path / "argilla.key"
    key.write_text("k")
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        argilla_connection(config(tmp_path, api_url="http://127.0.0.1:6999", api_key_file=str(key)))
