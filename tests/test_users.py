"""Labeler accounts against the real embedded server: create, list, remove, and bad input that must
change nothing on the server. Also the connection resolver and the CLI commands."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from argilla_setup import users as users_mod
from argilla_setup.connection import (
    Api,
    Connection,
    ConnectionMissingError,
    resolve_connection,
)
from loop.cli import cli
from loop.errors import AlreadyExistsError, AuthError, NotFoundError
from loop.fsutil import write_secret


def _uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def owner_api(argilla_stack):
    with Api(Connection(argilla_stack.api_url, argilla_stack.api_key)) as api:
        yield api


def _server_usernames(api: Api) -> set[str]:
    return {u["username"] for u in api.get("/api/v1/users")["items"]}


def _workspace_names(api: Api) -> set[str]:
    return {w["name"] for w in api.get("/api/v1/me/workspaces")["items"]}


# Connection resolution (no server needed).


def test_connection_repr_hides_the_key() -> None:
    conn = Connection("http://h:1/", "secret-key-123")
    assert conn.api_url == "http://h:1"
    assert "secret-key-123" not in repr(conn)
    assert "secret-key-123" not in repr(Api(conn))


def test_resolve_order_args_env_owner_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    write_secret(tmp_path / "owner.json", json.dumps({"api_url": "http://owner:1", "api_key": "k-owner"}))
    assert resolve_connection(home=tmp_path) == Connection("http://owner:1", "k-owner")
    monkeypatch.setenv("ARGILLA_API_URL", "http://env:2")
    monkeypatch.setenv("ARGILLA_API_KEY", "k-env")
    assert resolve_connection(home=tmp_path) == Connection("http://env:2", "k-env")
    assert resolve_connection("http://arg:3", "k-arg", home=tmp_path) == Connection("http://arg:3", "k-arg")


def test_no_connection_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(ConnectionMissingError, match="pickloop argilla up") as info:
        resolve_connection(home=tmp_path)
    assert "ARGILLA_API_KEY" in str(info.value)


# Against the server.


def test_wrong_api_key_is_an_auth_error_without_the_key(argilla_stack) -> None:
    with (
        Api(Connection(argilla_stack.api_url, "wrong-key-abcdef")) as api,
        pytest.raises(AuthError, match="401") as info,
    ):
        api.me()
    assert "wrong-key-abcdef" not in str(info.value)
    assert "/api/v1/me" in str(info.value)


def test_add_list_remove_users(owner_api: Api, tmp_path: Path) -> None:
    ws = _uniq("ws")
    names = [_uniq("alice"), _uniq("bob")]
    created = users_mod.add_users(owner_api, names, workspace=ws, create_workspace=True, home=tmp_path)
    assert [u.name for u in created] == names
    for user in created:
        assert user.password not in repr(user)
        path = tmp_path / "users" / f"{user.name}.json"
        assert user.credentials_file == path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        creds = json.loads(path.read_text())
        assert creds["password"] == user.password and creds["username"] == user.name
        # The written credentials really log in, as an annotator in the workspace.
        with Api(Connection(creds["api_url"], creds["api_key"])) as own:
            me = own.me()
            assert me["username"] == user.name and me["role"] == "annotator"
            assert [w["name"] for w in own.get("/api/v1/me/workspaces")["items"]] == [ws]
    listed = {u.name: u for u in users_mod.list_users(owner_api)}
    assert listed[names[0]] == users_mod.UserInfo(names[0], "annotator", (ws,))
    assert "password" not in repr(listed[names[0]])

    assert users_mod.remove_users(owner_api, names, home=tmp_path) == names
    assert not set(names) & _server_usernames(owner_api)
    assert not list((tmp_path / "users").glob("*.json"))


def test_duplicate_user_creates_nothing(owner_api: Api, tmp_path: Path) -> None:
    existing = _uniq("dup")
    users_mod.add_users(owner_api, [existing], home=tmp_path)
    fresh = _uniq("fresh")
    before = _server_usernames(owner_api)
    with pytest.raises(AlreadyExistsError, match=existing):
        users_mod.add_users(owner_api, [fresh, existing], home=tmp_path)
    assert _server_usernames(owner_api) == before
    assert not (tmp_path / "users" / f"{fresh}.json").exists()
    with pytest.raises(users_mod.InvalidUserNameError, match="given twice"):
        users_mod.add_users(owner_api, [fresh, fresh], home=tmp_path)
    assert fresh not in _server_usernames(owner_api)


def test_unknown_workspace_creates_nothing(owner_api: Api, tmp_path: Path) -> None:
    name, ws = _uniq("carol"), _uniq("nows")
    with pytest.raises(NotFoundError, match=ws):
        users_mod.add_users(owner_api, [name], workspace=ws, home=tmp_path)
    assert name not in _server_usernames(owner_api)
    assert ws not in _workspace_names(owner_api)
    assert not (tmp_path / "users").exists()


def test_invalid_names_create_nothing(owner_api: Api, tmp_path: Path) -> None:
    good = _uniq("dave")
    for bad in ["", "../etc", "has space", "-lead", "x" * 65]:
        with pytest.raises(users_mod.InvalidUserNameError):
            users_mod.add_users(owner_api, [good, bad], home=tmp_path)
    assert good not in _server_usernames(owner_api)


def test_failure_after_account_creation_rolls_the_user_back(owner_api: Api, tmp_path: Path) -> None:
    """The credentials file cannot be written (a plain file sits where the users folder goes): the
    account created a moment before is deleted again, so no user exists without its credentials."""
    name = _uniq("erin")
    (tmp_path / "users").write_text("not a folder")
    with pytest.raises(OSError):
        users_mod.add_users(owner_api, [name], home=tmp_path)
    assert name not in _server_usernames(owner_api)


def test_remove_unknown_user_removes_nothing(owner_api: Api, tmp_path: Path) -> None:
    keep = _uniq("gina")
    users_mod.add_users(owner_api, [keep], home=tmp_path)
    with pytest.raises(NotFoundError, match="ghost"):
        users_mod.remove_users(owner_api, [keep, "ghost-" + uuid.uuid4().hex[:6]], home=tmp_path)
    assert keep in _server_usernames(owner_api)
    assert (tmp_path / "users" / f"{keep}.json").exists()


# CLI.


def test_cli_users_add_list_remove(argilla_stack, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["argilla", "--api-url", argilla_stack.api_url, "--api-key", argilla_stack.api_key, "users"]
    ws = _uniq("cliws")
    name = _uniq("hank")
    result = runner.invoke(
        cli,
        [*base, "add", name, "--workspace", ws, "--create-workspace", "--home", str(tmp_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    password = json.loads((tmp_path / "users" / f"{name}.json").read_text())["password"]
    # Not a terminal (CliRunner): the password stays in the 0600 file, which the output names.
    assert password not in result.output
    assert str(tmp_path / "users" / f"{name}.json") in result.output
    assert argilla_stack.api_key not in result.output

    shown = _uniq("hank")
    result = runner.invoke(
        cli, [*base, "add", shown, "--show-password", "--home", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    shown_password = json.loads((tmp_path / "users" / f"{shown}.json").read_text())["password"]
    assert result.output.count(shown_password) == 1
    runner.invoke(cli, [*base, "remove", shown, "--home", str(tmp_path)], catch_exceptions=False)

    result = runner.invoke(cli, [*base, "list"], catch_exceptions=False)
    assert result.exit_code == 0
    line = next(row for row in result.output.splitlines() if row.startswith(name))
    assert line.split() == [name, "annotator", ws]
    assert password not in result.output

    result = runner.invoke(cli, [*base, "remove", name, "--home", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0 and f"Removed {name}." in result.output
    assert not (tmp_path / "users" / f"{name}.json").exists()


def test_cli_uses_embedded_owner_file_by_default(argilla_stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    result = CliRunner().invoke(
        cli, ["argilla", "users", "list", "--home", str(argilla_stack.home)], catch_exceptions=False
    )
    assert result.exit_code == 0
    assert "owner" in result.output


def test_cli_duplicate_user_is_a_clean_error(
    argilla_stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from loop.cli import main

    name = _uniq("ivan")
    runner = CliRunner()
    base = ["argilla", "--api-url", argilla_stack.api_url, "--api-key", argilla_stack.api_key, "users"]
    ok = runner.invoke(cli, [*base, "add", name, "--home", str(tmp_path)], catch_exceptions=False)
    assert ok.exit_code == 0
    with pytest.raises(AlreadyExistsError):
        runner.invoke(cli, [*base, "add", name, "--home", str(tmp_path)], catch_exceptions=False)
    # Through the console entry point the same mistake is one clean line and exit code 1.
    argv = ["pickloop", *base, "add", name, "--home", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "already exist" in err and "Traceback" not in err


@pytest.mark.parametrize("cmd", [["users"], ["users", "add"], ["users", "list"], ["users", "remove"]])
def test_help(cmd: list[str]) -> None:
    result = CliRunner().invoke(cli, ["argilla", *cmd, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "Usage:" in result.output
