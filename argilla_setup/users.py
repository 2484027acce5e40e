"""Labeler accounts: create with random passwords, list, remove.

Every name is checked before anything is created (format, duplicates, already on the server, the
workspace exists), so a bad request changes nothing. Each user is created in three steps (account,
workspace membership, credentials file 0600 under `<home>/users/<name>.json`); if a later step fails the
account is deleted again, so no user is left half-made. Passwords are returned once and written only to
that file; they never appear in reprs, logs or errors.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from argilla_setup.connection import Api
from loop.errors import AlreadyExistsError, NotFoundError, PickloopError
from loop.fsutil import write_secret
from loop.paths import argilla_home

USERS_DIR = "users"
ROLES = ("annotator", "admin", "owner")
# Safe as a file name and as an Argilla username.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidUserNameError(PickloopError, ValueError):
    """A user name that is empty, too long, or not made of letters, digits, '.', '_' and '-'."""


@dataclass(frozen=True)
class NewUser:
    """A user just created; `password` is shown once by the CLI and kept only in `credentials_file`."""

    name: str
    role: str
    workspace: str | None
    credentials_file: Path
    password: str = field(repr=False)


@dataclass(frozen=True)
class UserInfo:
    """A user as listed: never the password or API key."""

    name: str
    role: str
    workspaces: tuple[str, ...]


def users_dir(home: Path | None = None) -> Path:
    return (home or argilla_home()) / USERS_DIR


def credentials_file(name: str, home: Path | None = None) -> Path:
    """Where `add_users` writes `name`'s credentials (JSON, mode 0600)."""
    return users_dir(home) / f"{name}.json"


def validate_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Reject bad or repeated names before any request is sent."""
    if not names:
        raise InvalidUserNameError("give at least one user name")
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidUserNameError(
                f"user name {name!r} must be 1-64 characters: letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise InvalidUserNameError(f"user name(s) given twice: {', '.join(repeated)}")
    return list(names)


def _server_users(api: Api) -> dict[str, dict]:
    return {u["username"]: u for u in api.get("/api/v1/users")["items"]}


def _workspaces(api: Api) -> dict[str, dict]:
    return {w["name"]: w for w in api.get("/api/v1/me/workspaces")["items"]}


def add_users(
    api: Api,
    names: list[str] | tuple[str, ...],
    *,
    workspace: str | None = None,
    create_workspace: bool = False,
    role: str = "annotator",
    home: Path | None = None,
) -> list[NewUser]:
    """Create `names` with random passwords, add them to `workspace`, write their credentials.

    Raises before creating anything when a name is invalid or taken (AlreadyExistsError), or when
    `workspace` does not exist and `create_workspace` is false (NotFoundError).
    """
    names = validate_names(names)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    taken = sorted(set(names) & set(_server_users(api)))
    if taken:
        raise AlreadyExistsError(f"user(s) already exist: {', '.join(taken)}; nothing was created")
    existing_files = [n for n in names if credentials_file(n, home).exists()]
    if existing_files:
        raise AlreadyExistsError(
            f"credentials file(s) already exist for {', '.join(existing_files)} under {users_dir(home)}; "
            "remove them first; nothing was created"
        )

    ws_id = None
    if workspace is not None:
        ws = _workspaces(api).get(workspace)
        if ws is None and not create_workspace:
            raise NotFoundError(
                f"workspace {workspace!r} does not exist (create it with --create-workspace); "
                "nothing was created"
            )
        if ws is None:
            ws = api.post("/api/v1/workspaces", json={"name": workspace})
        ws_id = ws["id"]

    created = []
    for name in names:
        created.append(_add_one(api, name, role=role, workspace=workspace, ws_id=ws_id, home=home))
    return created


def _add_one(
    api: Api, name: str, *, role: str, workspace: str | None, ws_id: str | None, home: Path | None
) -> NewUser:
    password = secrets.token_urlsafe(18)
    user = api.post(
        "/api/v1/users",
        json={"username": name, "first_name": name, "role": role, "password": password},
    )
    try:
        if ws_id is not None:
            api.post(f"/api/v1/workspaces/{ws_id}/users", json={"user_id": user["id"]})
        path = credentials_file(name, home)
        creds = {
            "api_url": api.conn.api_url,
            "username": name,
            "password": password,
            "api_key": user["api_key"],
            "role": role,
            "workspace": workspace,
        }
        write_secret(path, json.dumps(creds, indent=2, sort_keys=True) + "\n")
    except BaseException:
        # Undo the account so a failed step never leaves a user without membership or credentials.
        api.delete(f"/api/v1/users/{user['id']}")
        raise
    return NewUser(name=name, role=role, workspace=workspace, credentials_file=path, password=password)


def describe_new_user(user: NewUser, interactive: bool) -> str:
    """One line announcing a new account. The password is included only when `interactive` (a person
    at a terminal, e.g. `sys.stdout.isatty()`): otherwise stdout is a log file or CI output, which
    outlives the secret, and the line names the 0600 credentials file instead."""
    where = f" in workspace {user.workspace}" if user.workspace else ""
    kept = f"kept in {user.credentials_file} (mode 0600)"
    if interactive:
        return f"{user.role} {user.name} created{where}, password {user.password} (shown once; {kept})"
    return f"{user.role} {user.name} created{where}; password {kept}"


def list_users(api: Api) -> list[UserInfo]:
    """Every user on the server with role and workspaces, sorted by name."""
    out = []
    for user in sorted(api.get("/api/v1/users")["items"], key=lambda u: u["username"]):
        workspaces = api.get(f"/api/v1/users/{user['id']}/workspaces")["items"]
        out.append(
            UserInfo(
                name=user["username"],
                role=user["role"],
                workspaces=tuple(sorted(w["name"] for w in workspaces)),
            )
        )
    return out


def remove_users(api: Api, names: list[str] | tuple[str, ...], *, home: Path | None = None) -> list[str]:
    """Delete `names` (all must exist, else nothing is deleted) and their credentials files."""
    names = validate_names(names)
    users = _server_users(api)
    missing = [n for n in names if n not in users]
    if missing:
        raise NotFoundError(f"user(s) do not exist: {', '.join(missing)}; nothing was removed")
    me = api.me()
    if me["username"] in names:
        raise PickloopError(f"refusing to remove {me['username']!r}: it is the account making the request")
    for name in names:
        api.delete(f"/api/v1/users/{users[name]['id']}")
        credentials_file(name, home).unlink(missing_ok=True)
    return names
