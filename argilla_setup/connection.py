"""Where the Argilla server is and how to talk to it.

One resolver (`resolve_connection`) decides which server every command uses: explicit arguments, then
the `ARGILLA_API_URL`/`ARGILLA_API_KEY` environment variables (a real deployment), then the owner
credentials the embedded server wrote under its home. `Api` is a thin REST client for the endpoints the
SDK does not cover well (rankings keep `rank`, the `/me/...` endpoints annotators use): one
`httpx.Client`, the API key header, HTTP errors mapped to pickloop errors in one place, and transient
failures retried by `loop.retry.with_retries`. Keys never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from loop.errors import AlreadyExistsError, ArgillaError, AuthError, NotFoundError, PickloopError
from loop.paths import argilla_home
from loop.retry import cannot_heal, is_retryable, status_of, with_retries

if TYPE_CHECKING:
    import argilla as rg

ENV_API_URL = "ARGILLA_API_URL"
ENV_API_KEY = "ARGILLA_API_KEY"
OWNER_FILE = "owner.json"
API_KEY_HEADER = "X-Argilla-Api-Key"


class ConnectionMissingError(PickloopError, LookupError):
    """No Argilla server is configured: no arguments, no env vars and no embedded owner credentials."""


@dataclass(frozen=True)
class Connection:
    """An Argilla server URL and the API key to use on it (the key is hidden from `repr`)."""

    api_url: str
    api_key: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))


def owner_file(home: Path | None = None) -> Path:
    """The embedded server's owner credentials file (written 0600 by `argilla_setup.server`)."""
    return (home or argilla_home()) / OWNER_FILE


def resolve_connection(
    api_url: str | None = None, api_key: str | None = None, home: Path | None = None
) -> Connection:
    """Explicit arguments > `ARGILLA_API_URL`/`ARGILLA_API_KEY` > `<home>/owner.json`.

    Each of URL and key is resolved on its own through that order, so `--api-key` with the embedded
    server's URL works too.
    """
    url = api_url or os.environ.get(ENV_API_URL) or None
    key = api_key or os.environ.get(ENV_API_KEY) or None
    if not (url and key):
        path = owner_file(home)
        owner = _read_owner(path)
        if owner is not None:
            url = url or owner.get("api_url")
            key = key or owner.get("api_key")
    if not (url and key):
        missing = " and ".join(n for n, v in (("API URL", url), ("API key", key)) if not v)
        raise ConnectionMissingError(
            f"no Argilla {missing} configured: start the embedded server with `pickloop argilla up`, "
            f"or point at a deployment with --api-url/--api-key (or {ENV_API_URL}/{ENV_API_KEY})"
        )
    return Connection(api_url=url, api_key=key)


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConnectionMissingError(f"{path}: unreadable owner credentials ({type(exc).__name__})") from None
    return data if isinstance(data, dict) else None


def client(conn: Connection) -> rg.Argilla:
    """An Argilla SDK client for `conn` (imported lazily: the SDK is slow to import)."""
    import argilla as rg

    return rg.Argilla(api_url=conn.api_url, api_key=conn.api_key)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("params") or detail
    return str(detail)[:500]


def raise_for_status(response: httpx.Response) -> None:
    """The one place HTTP answers become pickloop errors: 401/403 AuthError, 404 NotFoundError,
    409 AlreadyExistsError, other 4xx/5xx ArgillaError. Messages carry method and path, never the key."""
    if response.is_success:
        return
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    detail = _detail(response)
    if status in (401, 403):
        what = "bad or missing API key" if status == 401 else "not allowed for this user"
        raise AuthError(f"{where}: HTTP {status}, {what}")
    if status == 404:
        raise NotFoundError(f"{where}: HTTP 404, {detail}")
    if status == 409:
        raise AlreadyExistsError(f"{where}: HTTP 409, {detail}")
    exc = ArgillaError(f"{where}: HTTP {status}, {detail}")
    exc.response = response  # type: ignore[attr-defined]  # lets loop.retry see the status
    raise exc


def _is_loopback(url: str) -> bool:
    host = httpx.URL(url).host
    return host in ("localhost", "::1") or host.startswith("127.")


def _post_retryable(exc: BaseException) -> bool:
    """A POST is replayed only when the server surely did not act on it."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return not cannot_heal(exc)
    return status_of(exc) in (429, 503)


class Api:
    """A small REST client for one Argilla server and one API key; reuse it (one connection pool)."""

    def __init__(self, conn: Connection, *, timeout: float = 120.0, max_tries: int = 4):
        self.conn = conn
        self.max_tries = max_tries
        self.cache: dict[str, Any] = {}  # per-server facts worth asking once (e.g. optional routes)
        headers = {API_KEY_HEADER: conn.api_key}
        if _is_loopback(conn.api_url):
            # The server brotli-compresses large answers; on loopback that only costs CPU on both ends.
            headers["Accept-Encoding"] = "identity"
        self._http = httpx.Client(base_url=conn.api_url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"Api({self.conn.api_url!r})"

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request, retrying transient failures; raise the mapped error on a bad answer.

        GET/PUT/DELETE are retried on connection errors, 408, 429 and 5xx. A POST may have taken
        effect before a 5xx or a lost answer, so it is retried only when it surely did not: the
        connection could not be made, or the server said 429/503.
        """

        def once() -> httpx.Response:
            response = self._http.request(method, path, **kwargs)
            raise_for_status(response)
            return response

        retryable = is_retryable if method.upper() != "POST" else _post_retryable
        return with_retries(once, what=f"{method} {path}", max_tries=self.max_tries, retryable=retryable)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=json, **kwargs)
        return response.json() if response.content else None

    def put(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        response = self.request("PUT", path, json=json, **kwargs)
        return response.json() if response.content else None

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        response = self.request("PATCH", path, json=json, **kwargs)
        return response.json() if response.content else None

    def delete(self, path: str, **kwargs: Any) -> Any:
        response = self.request("DELETE", path, **kwargs)
        return response.json() if response.content else None

    # Small lookups several modules need.

    def me(self) -> dict[str, Any]:
        """The user this key belongs to (also a cheap credentials check)."""
        return self.get("/api/v1/me")

    def workspace_by_name(self, name: str) -> dict[str, Any] | None:
        """The workspace called `name`, or None (owners see every workspace in `/me/workspaces`)."""
        for ws in self.get("/api/v1/me/workspaces")["items"]:
            if ws["name"] == name:
                return ws
        return None

    def dataset_by_name(self, name: str, workspace: str | None = None) -> dict[str, Any]:
        """The dataset called `name` (in `workspace` when given); NotFoundError when absent."""
        ws_id = None
        if workspace is not None:
            ws = self.workspace_by_name(workspace)
            if ws is None:
                raise NotFoundError(f"workspace {workspace!r} does not exist")
            ws_id = ws["id"]
        params = {"name": name, **({"workspace_id": ws_id} if ws_id else {})}
        for ds in self.get("/api/v1/me/datasets", params=params)["items"]:
            if ds["name"] == name and (ws_id is None or ds["workspace_id"] == ws_id):
                return ds
        where = f" in workspace {workspace!r}" if workspace else ""
        raise NotFoundError(f"dataset {name!r} does not exist{where}")
