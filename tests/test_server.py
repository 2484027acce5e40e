"""The embedded stack's lifecycle: start, idempotent re-start, status, stop, restart, bad ports.

These start their own stack in a private home (the shared `argilla_stack` fixture must stay up).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from argilla_setup import server
from loop.cli import cli
from loop.errors import ServerStartError

DEFAULT_CREDENTIALS = {"argilla", "12345678", "argilla.apikey", "owner.apikey", "1234"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_lifecycle_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "argilla"
    port = server.free_port()
    runner = CliRunner()
    try:
        first = runner.invoke(
            cli, ["argilla", "up", "--home", str(home), "--port", str(port)], catch_exceptions=False
        )
        assert first.exit_code == 0, first.output
        assert f"Argilla is running at http://127.0.0.1:{port}" in first.output

        owner_file = home / "owner.json"
        owner = json.loads(owner_file.read_text())
        assert stat.S_IMODE(os.stat(owner_file).st_mode) == 0o600
        assert owner["password"] not in DEFAULT_CREDENTIALS and owner["api_key"] not in DEFAULT_CREDENTIALS
        assert len(owner["password"]) >= 16 and len(owner["api_key"]) >= 32
        # Not a terminal (CliRunner): the secrets stay in the 0600 file, which the output names.
        assert owner["password"] not in first.output and owner["api_key"] not in first.output
        assert str(owner_file) in first.output

        me = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"X-Argilla-Api-Key": owner["api_key"]})
        assert me.status_code == 200 and me.json()["role"] == "owner"
        bad = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"X-Argilla-Api-Key": "argilla.apikey"})
        assert bad.status_code == 401

        searched = _search_round_records(f"http://127.0.0.1:{port}", owner["api_key"])
        assert len(searched) == 3

        pids = {c: int((home / "run" / f"{c}.pid").read_text()) for c in server.COMPONENTS}
        second = runner.invoke(
            cli, ["argilla", "up", "--home", str(home), "--port", str(port)], catch_exceptions=False
        )
        assert second.exit_code == 0
        assert "already running" in second.output
        assert owner["password"] not in second.output
        assert {c: int((home / "run" / f"{c}.pid").read_text()) for c in server.COMPONENTS} == pids

        status = runner.invoke(cli, ["argilla", "status", "--home", str(home)], catch_exceptions=False)
        assert status.exit_code == 0, status.output
        for component in ("redis", "server", "worker", "search engine"):
            assert any(
                line.startswith(component) and ("running" in line or " ok " in line)
                for line in status.output.splitlines()
            ), status.output
        assert owner["api_key"] not in status.output

        down = runner.invoke(cli, ["argilla", "down", "--home", str(home)], catch_exceptions=False)
        assert down.exit_code == 0
        assert "worker" in down.output and "server" in down.output and "redis" in down.output
        assert not any(_alive(pid) for pid in pids.values())
        after = runner.invoke(cli, ["argilla", "status", "--home", str(home)], catch_exceptions=False)
        assert after.exit_code == 1

        # Restart on another port: same owner, no new credentials shown, api_url updated.
        port2 = server.free_port()
        again = server.start(home, port=port2)
        assert not again.created_owner and again.api_key == owner["api_key"]
        assert json.loads(owner_file.read_text())["api_url"] == f"http://127.0.0.1:{port2}"
        # The search index persisted: the same search returns the same records, in the same order.
        assert _search_round_records(again.api_url, again.api_key, create=False) == searched
    finally:
        server.stop(home)


def _search_round_records(api_url: str, api_key: str, *, create: bool = True) -> list[str]:
    """Create (once) a round dataset with 5 records; search it with a metadata filter and a sort."""
    import argilla as rg

    from argilla_setup import schema
    from argilla_setup.connection import Api, Connection, client

    conn = Connection(api_url, api_key)
    if create:
        sdk = client(conn)
        ds = rg.Dataset(
            name="restart-check",
            workspace="pickloop",
            settings=schema.round_settings(1, 2, client=sdk),
            client=sdk,
        )
        ds.create()
        ds.records.log(
            [
                {
                    "question": f"q{i}",
                    "candidate_1": "a",
                    "candidate_2": "b",
                    "round": 1,
                    "turn": i % 2,
                    "example_id": f"e{i}",
                }
                for i in range(5)
            ]
        )
    with Api(conn) as api:
        ds_id = api.dataset_by_name("restart-check", "pickloop")["id"]
        body = {
            "query": {},
            "filters": {
                "and": [
                    {"type": "range", "scope": {"entity": "metadata", "metadata_property": "turn"}, "le": 0}
                ]
            },
            "sort": [{"scope": {"entity": "metadata", "metadata_property": "example_id"}, "order": "desc"}],
        }
        found = api.post(f"/api/v1/datasets/{ds_id}/records/search", json=body, params={"limit": 50})
    return [item["record"]["external_id"] or item["record"]["id"] for item in found["items"]]


def test_port_in_use_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "argilla"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match=rf"port {port} .* already in use.*--port"):
            server.start(home, port=port)
    assert not home.exists()


def test_stop_leaves_other_homes_alone(argilla_stack, tmp_path: Path) -> None:
    assert server.stop(tmp_path / "never-started") == []
    assert (
        httpx.get(
            f"{argilla_stack.api_url}/api/v1/me", headers={"X-Argilla-Api-Key": argilla_stack.api_key}
        ).status_code
        == 200
    )


def test_status_of_a_home_that_never_ran(tmp_path: Path) -> None:
    st = server.status(tmp_path / "nothing")
    assert not st.healthy
    assert [c.running for c in st.components] == [False, False, False]
