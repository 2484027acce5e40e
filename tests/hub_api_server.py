"""A small Hugging Face Hub API server for tests: the real `huggingface_hub`/`datasets` code talks to it.

It implements what `Dataset.push_to_hub`, `load_dataset(repo, revision=...)` and the `HfApi` calls
pickloop makes actually send (found by running the real client against it and reading this log):
repo create/info, whoami, preupload, LFS batch + basic upload + verify, NDJSON commits with parent
checks, refs, tags, branches, commit listing, tree and paths-info, and resolve with `Range`. Repos are
kept as commit snapshots in memory; file contents are content-addressed blobs in a folder.

Errors come back in the shape `huggingface_hub.utils.hf_raise_for_status` maps to its exceptions
(`X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`; a bad token is a 401 with
`X-Error-Message: Invalid credentials in Authorization header`).

Test switches: `inject_failures(route, n, status)` makes the next `n` requests to a route fail with a
5xx; `after(route, fn)` runs `fn` once after a route succeeds (e.g. a concurrent push); `requests`
records `(method, route, path, status)` for every call.

Run by hand: `python tests/hub_api_server.py --port 8765` then `HF_ENDPOINT=http://127.0.0.1:8765`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import uvicorn
import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".zip", ".gz", ".zst", ".npy")
_GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in _LFS_SUFFIXES).encode()
_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_REV = r"(?P<rev>[^/]+)"


class HubHTTPError(Exception):
    """Raised inside a handler to answer with an error in the Hub's shape."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> Response:
        headers = {"X-Error-Message": self.message}
        if self.code:
            headers["X-Error-Code"] = self.code
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Entry:
    """One file in a commit's tree: its content blob (sha256) and how git would see it."""

    sha256: str
    size: int
    lfs: bool

    @property
    def oid(self) -> str:
        """Git blob id: of the content for regular files, of the LFS pointer for LFS files."""
        return _git_blob_sha1(_lfs_pointer(self.sha256, self.size)) if self.lfs else self._content_oid

    _content_oid: str = ""


@dataclass
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    date: str
    author: str
    tree: dict[str, Entry]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"commit", "message"}

    def resolve(self, rev: str) -> Commit:
        """A branch, tag or (full or short) commit id, as the Hub resolves revisions."""
        rev = unquote(rev)
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        if rev in self.tags:
            return self.commits[self.tags[rev]["commit"]]
        if rev.startswith("refs/heads/") and rev[11:] in self.branches:
            return self.commits[self.branches[rev[11:]]]
        if rev.startswith("refs/tags/") and rev[10:] in self.tags:
            return self.commits[self.tags[rev[10:]]["commit"]]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            hits = [c for sha, c in self.commits.items() if sha.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        raise HubHTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def history(self, head: str) -> list[Commit]:
        """First-parent history from `head`, newest first."""
        out, sha = [], head
        while sha:
            commit = self.commits[sha]
            out.append(commit)
            sha = commit.parents[0] if commit.parents else ""
        return out


class HubStore:
    """Repos (in memory, guarded by one lock) and content-addressed blobs (on disk)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_path(sha)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def entry(self, data: bytes, lfs: bool) -> Entry:
        return Entry(self.put_blob(data), len(data), lfs, _git_blob_sha1(data))

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool, author: str) -> Repo:
        with self.lock:
            repo = Repo(repo_type, repo_id, private, _now())
            self.repos[(repo_type, repo_id)] = repo
            tree = {".gitattributes": self.entry(_GITATTRIBUTES, lfs=False)}
            self.add_commit(repo, "main", None, "initial commit", "", author, tree)
            return repo

    def add_commit(
        self,
        repo: Repo,
        branch: str,
        parent: str | None,
        title: str,
        message: str,
        author: str,
        tree: dict[str, Entry],
    ) -> Commit:
        with self.lock:
            parents = [parent] if parent else []
            date = _now()
            key = json.dumps(
                [
                    parents,
                    title,
                    message,
                    date,
                    len(repo.commits),
                    sorted((p, e.sha256) for p, e in tree.items()),
                ]
            )
            sha = hashlib.sha1(key.encode()).hexdigest()
            commit = Commit(sha, parents, title, message, date, author, dict(tree))
            repo.commits[sha] = commit
            repo.branches[branch] = sha
            return commit

    def commit_files(
        self, repo_type: str, repo_id: str, files: dict[str, bytes], title: str, branch: str = "main"
    ) -> Commit:
        """Commit straight into the store (what another client's push would do): for tests."""
        with self.lock:
            repo = self.get_repo(repo_type, repo_id)
            head = repo.resolve(branch)
            tree = dict(head.tree)
            for path, data in files.items():
                tree[path] = self.entry(data, lfs=path.endswith(_LFS_SUFFIXES))
            return self.add_commit(repo, branch, head.id, title, "", "someone-else", tree)


Handler = Callable[[Request, dict[str, str]], Any]


class HubApp:
    """The ASGI app: one dispatcher over the raw path (so `%2F` in revisions stays one segment)."""

    def __init__(self, store: HubStore, tokens: dict[str, str]):
        self.store = store
        self.tokens = tokens  # token -> user name
        self.base_url = ""
        self.requests: list[tuple[str, str, str, int]] = []
        self._failures: dict[str, list[tuple[int, bool]]] = {}
        self._after: dict[str, list[Callable[[], None]]] = {}
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        t = r"(?P<type>models|datasets|spaces)"
        add = self._add
        add("GET", r"/api/whoami-v2", "whoami", self.whoami)
        add("POST", r"/api/repos/create", "create_repo", self.create_repo)
        add("POST", r"/api/validate-yaml", "validate_yaml", self.validate_yaml)
        add("GET", rf"/api/{t}/{_REPO}", "repo_info", self.repo_info)
        add("GET", rf"/api/{t}/{_REPO}/revision/{_REV}", "repo_info", self.repo_info)
        add("POST", rf"/api/{t}/{_REPO}/preupload/{_REV}", "preupload", self.preupload)
        add(
            "POST",
            rf"/(?P<prefix>datasets/|spaces/)?{_REPO}\.git/info/lfs/objects/batch",
            "lfs_batch",
            self.lfs_batch,
        )
        add("PUT", r"/_lfs/upload/(?P<oid>[0-9a-f]{64})", "lfs_upload", self.lfs_upload)
        add("POST", r"/_lfs/verify", "lfs_verify", self.lfs_verify)
        add("POST", rf"/api/{t}/{_REPO}/commit/{_REV}", "commit", self.commit)
        add("GET", rf"/api/{t}/{_REPO}/refs", "refs", self.refs)
        add("GET", rf"/api/{t}/{_REPO}/commits/{_REV}", "commits", self.commits)
        add("POST", rf"/api/{t}/{_REPO}/tag/{_REV}", "tag_create", self.tag_create)
        add("DELETE", rf"/api/{t}/{_REPO}/tag/(?P<tag>[^/]+)", "tag_delete", self.tag_delete)
        add("POST", rf"/api/{t}/{_REPO}/branch/(?P<branch>[^/]+)", "branch_create", self.branch_create)
        add("DELETE", rf"/api/{t}/{_REPO}/branch/(?P<branch>[^/]+)", "branch_delete", self.branch_delete)
        add("GET", rf"/api/{t}/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?", "tree", self.tree)
        add("POST", rf"/api/{t}/{_REPO}/paths-info/{_REV}", "paths_info", self.paths_info)
        for method in ("GET", "HEAD"):
            add(
                method,
                rf"/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/{_REV}/(?P<path>.+)",
                "resolve",
                self.resolve,
            )

    def _add(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + r"/?"), name, handler))

    # -- test switches -------------------------------------------------------------------------

    def inject_failures(self, route: str, n: int = 1, status: int = 503, *, lost: bool = False) -> None:
        """The next `n` requests to `route` (a name such as "commit" or "tag_create") answer `status`.

        `lost=True`: the request is carried out first and only its answer is replaced by the error, as
        when a gateway times out after the Hub has committed.
        """
        if route not in {name for _, _, name, _ in self._routes}:
            raise ValueError(f"unknown route {route!r}")
        self._failures.setdefault(route, []).extend([(status, lost)] * n)

    def after(self, route: str, fn: Callable[[], None]) -> None:
        """Run `fn` once, right after the next successful request to `route` has been handled."""
        self._after.setdefault(route, []).append(fn)

    def calls(self, route: str, method: str | None = None) -> int:
        """How many requests reached `route` (any status)."""
        return sum(1 for m, r, _, _ in self.requests if r == route and (method is None or m == method))

    def reset(self) -> None:
        self.requests.clear()
        self._failures.clear()
        self._after.clear()

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        request = Request(scope, receive)
        response = await self._dispatch(request)
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        method = request.method
        name = "unknown"
        try:
            for route_method, pattern, route_name, handler in self._routes:  # noqa: B007 (used below)
                match = pattern.fullmatch(raw)
                if match and route_method == method:
                    name = route_name
                    break
            else:
                raise HubHTTPError(404, f"No route for {method} {raw}")
            failure = self._failures[name].pop(0) if self._failures.get(name) else None
            if failure and not failure[1]:
                raise HubHTTPError(failure[0], f"Injected failure on {name}")
            params = {k: unquote(v) if v is not None else "" for k, v in match.groupdict().items()}
            response = await handler(request, params)
            if failure:
                raise HubHTTPError(failure[0], f"Injected failure on {name} (after handling it)")
        except HubHTTPError as exc:
            response = exc.response()
        self.requests.append((method, name, raw, response.status_code))
        if response.status_code < 400:
            for fn in self._after.pop(name, []):
                fn()
        return response

    # -- auth ----------------------------------------------------------------------------------

    def _user(self, request: Request, required: bool) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            user = self.tokens.get(header[7:].strip())
            if user is None:
                raise HubHTTPError(401, "Invalid credentials in Authorization header")
            return user
        if required:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return None

    def _repo(self, request: Request, params: dict[str, str], write: bool = False) -> Repo:
        user = self._user(request, required=write)
        repo_type = _TYPES.get(params.get("type", "")) or {
            "datasets/": "dataset",
            "spaces/": "space",
        }.get(params.get("prefix") or "", "model")
        repo = self.store.get_repo(repo_type, params["repo"])
        owner = repo.id.split("/")[0]
        if (repo.private or write) and user != owner:
            if repo.private:
                raise HubHTTPError(404, "Repository not found", "RepoNotFound")
            raise HubHTTPError(403, "You don't have the rights to write to this repo")
        return repo

    # -- handlers ------------------------------------------------------------------------------

    async def whoami(self, request: Request, params: dict[str, str]) -> Response:
        user = self._user(request, required=True)
        return JSONResponse(
            {
                "type": "user",
                "id": hashlib.sha1(str(user).encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
            }
        )

    async def create_repo(self, request: Request, params: dict[str, str]) -> Response:
        user = self._user(request, required=True)
        body = await request.json()
        repo_type = body.get("type") or "model"
        namespace = body.get("organization") or user
        if namespace != user:
            raise HubHTTPError(403, "You don't have the rights to create a repo in this namespace")
        repo_id = f"{namespace}/{body['name']}"
        url = f"{self.base_url}/{_PREFIX[repo_type]}{repo_id}"
        private = body.get("private")
        if private is None:
            private = body.get("visibility") == "private"
        with self.store.lock:
            if (repo_type, repo_id) in self.store.repos:
                return JSONResponse(
                    {"error": f"You already created this {repo_type} repo", "url": url}, status_code=409
                )
            self.store.create_repo(repo_type, repo_id, bool(private), str(user))
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    async def validate_yaml(self, request: Request, params: dict[str, str]) -> Response:
        self._user(request, required=False)
        content = (await request.json()).get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            return JSONResponse({"errors": [{"message": f"Invalid YAML: {exc}"}]}, status_code=400)
        if meta is not None and not isinstance(meta, dict):
            return JSONResponse({"errors": [{"message": "YAML metadata must be a mapping"}]}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    async def repo_info(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params)
        commit = repo.resolve(params.get("rev") or "main")
        card_data = None
        readme = commit.tree.get("README.md")
        if readme is not None:
            text = self.store.blob_path(readme.sha256).read_text(encoding="utf-8")
            match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
            if match:
                with contextlib.suppress(yaml.YAMLError):
                    card_data = yaml.safe_load(match.group(1))
        return JSONResponse(
            {
                "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
                "id": repo.id,
                "author": repo.id.split("/")[0],
                "sha": commit.id,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": repo.created_at,
                "lastModified": commit.date,
                "cardData": card_data if isinstance(card_data, dict) else None,
                "siblings": [{"rfilename": p} for p in sorted(commit.tree)],
            }
        )

    async def preupload(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params, write=True)
        body = await request.json()
        with contextlib.suppress(HubHTTPError):
            repo.resolve(params["rev"])  # a new branch is fine; the commit creates it
        files = []
        for f in body.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(_LFS_SUFFIXES) or f.get("size", 0) > 10_000_000 or b"\0" in sample
            files.append(
                {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            )
        return JSONResponse({"files": files, "commitOid": repo.commits[repo.branches["main"]].id})

    async def lfs_batch(self, request: Request, params: dict[str, str]) -> Response:
        self._repo(request, params, write=True)
        body = await request.json()
        if body.get("operation") != "upload":
            raise HubHTTPError(400, "Only the upload operation is supported")
        if "basic" not in body.get("transfers", ["basic"]):
            raise HubHTTPError(400, "Only the basic transfer is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.store.blob_path(oid).exists():
                out["actions"] = {
                    "upload": {"href": f"{self.base_url}/_lfs/upload/{oid}", "header": {}},
                    "verify": {"href": f"{self.base_url}/_lfs/verify", "header": {}},
                }
            objects.append(out)
        return JSONResponse(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            media_type="application/vnd.git-lfs+json",
        )

    async def lfs_upload(self, request: Request, params: dict[str, str]) -> Response:
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != params["oid"]:
            raise HubHTTPError(400, "Uploaded content does not match its oid")
        self.store.put_blob(data)
        return Response(status_code=200)

    async def lfs_verify(self, request: Request, params: dict[str, str]) -> Response:
        self._user(request, required=True)
        body = await request.json()
        path = self.store.blob_path(body["oid"])
        if not path.exists() or path.stat().st_size != int(body["size"]):
            raise HubHTTPError(404, "Object not found or size mismatch")
        return JSONResponse({"success": True})

    async def commit(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params, write=True)
        user = self._user(request, required=True)
        if request.query_params.get("create_pr"):
            raise HubHTTPError(400, "Pull requests are not supported by this test server")
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "The first line must be the commit header")
        header = lines[0]["value"]
        branch = params["rev"]
        if branch.startswith("refs/heads/"):
            branch = branch[11:]
        with self.store.lock:
            if branch not in repo.branches:
                raise HubHTTPError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent and parent != head.id:
                raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(head.tree)
            for item in lines[1:]:
                key, value = item.get("key"), item.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubHTTPError(400, "Only base64 file content is supported")
                    tree[path] = self.store.entry(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    blob = self.store.blob_path(value["oid"])
                    if not blob.exists() or blob.stat().st_size != int(value["size"]):
                        raise HubHTTPError(422, f"LFS object for {path} was not uploaded")
                    tree[path] = Entry(value["oid"], int(value["size"]), True, "")
                elif key == "deletedFile":
                    if tree.pop(path, None) is None:
                        raise HubHTTPError(404, f"File {path} does not exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for p in [p for p in tree if p.startswith(prefix)]:
                        del tree[p]
                else:
                    raise HubHTTPError(400, f"Unsupported commit operation {key!r}")
            commit = self.store.add_commit(
                repo,
                branch,
                head.id,
                header.get("summary", ""),
                header.get("description", ""),
                str(user),
                tree,
            )
        return JSONResponse(
            {
                "success": True,
                "commitOid": commit.id,
                "commitUrl": f"{self.base_url}/{_PREFIX[repo.type]}{repo.id}/commit/{commit.id}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    async def refs(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params)
        return JSONResponse(
            {
                "branches": [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                    for b, sha in repo.branches.items()
                ],
                "tags": [
                    {"name": t, "ref": f"refs/tags/{t}", "targetCommit": info["commit"]}
                    for t, info in repo.tags.items()
                ],
                "converts": [],
                **({"pullRequests": []} if request.query_params.get("include_prs") else {}),
            }
        )

    def _page(self, request: Request, items: list[Any], page_size: int = 50) -> Response:
        """Serve `items` in pages linked with a `Link: <...>; rel="next"` header, as the Hub does."""
        cursor = int(request.query_params.get("cursor", "0") or 0)
        chunk = items[cursor : cursor + page_size]
        headers = {}
        if cursor + page_size < len(items):
            query = {k: v for k, v in request.query_params.items() if k != "cursor"}
            query["cursor"] = str(cursor + page_size)
            qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
            headers["Link"] = f'<{self.base_url}{request.url.path}?{qs}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    async def commits(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params)
        head = repo.resolve(params["rev"])
        items = [
            {
                "id": c.id,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": c.author, "avatar": ""}],
                "date": c.date,
            }
            for c in repo.history(head.id)
        ]
        return self._page(request, items)

    async def tag_create(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params, write=True)
        body = await request.json()
        tag = body["tag"]
        with self.store.lock:
            commit = repo.resolve(params["rev"])
            if tag in repo.tags or tag in repo.branches:
                raise HubHTTPError(409, f"Tag {tag} already exists")
            repo.tags[tag] = {"commit": commit.id, "message": body.get("message", "")}
        return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.id})

    async def tag_delete(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params, write=True)
        with self.store.lock:
            if repo.tags.pop(params["tag"], None) is None:
                raise HubHTTPError(404, f"Tag {params['tag']} not found", "RevisionNotFound")
        return JSONResponse({})

    async def branch_create(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params, write=True)
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        branch = params["branch"]
        with self.store.lock:
            if branch in repo.branches or branch in repo.tags:
                raise HubHTTPError(409, f"Reference refs/heads/{branch} already exists")
            start = repo.resolve(body.get("startingPoint") or "main")
            repo.branches[branch] = start.id
        return JSONResponse({})

    async def branch_delete(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params, write=True)
        with self.store.lock:
            if params["branch"] == "main" or repo.branches.pop(params["branch"], None) is None:
                raise HubHTTPError(404, f"Branch {params['branch']} not found", "RevisionNotFound")
        return JSONResponse({})

    def _tree_entry(self, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.tree.get(path)
        if entry is not None:
            out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.lfs:
                out["lfs"] = {
                    "oid": entry.sha256,
                    "size": entry.size,
                    "pointerSize": len(_lfs_pointer(entry.sha256, entry.size)),
                }
        else:
            inner = sorted((p, e.sha256) for p, e in commit.tree.items() if p.startswith(path + "/"))
            oid = hashlib.sha1(json.dumps(inner).encode()).hexdigest()
            out = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if expand:
            out["lastCommit"] = {"id": commit.id, "title": commit.title, "date": commit.date}
        return out

    def _children(self, commit: Commit, base: str, recursive: bool) -> list[str]:
        prefix = base + "/" if base else ""
        files = [p for p in commit.tree if p.startswith(prefix)]
        if base and not files and base not in commit.tree:
            raise HubHTTPError(404, f"{base} does not exist in this revision", "EntryNotFound")
        names: set[str] = set()
        for p in files:
            parts = p[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts)) + 1):
                names.add(prefix + "/".join(parts[:i]))
        return sorted(names)

    async def tree(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params)
        commit = repo.resolve(params["rev"])
        base = (params.get("path") or "").strip("/")
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        expand = request.query_params.get("expand", "").lower() in ("1", "true")
        items = [self._tree_entry(commit, p, expand) for p in self._children(commit, base, recursive)]
        return self._page(request, items, page_size=1000)

    async def paths_info(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params)
        commit = repo.resolve(params["rev"])
        form = parse_qs((await request.body()).decode())
        expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.tree or any(p.startswith(path + "/") for p in commit.tree):
                out.append(self._tree_entry(commit, path, expand))
        return JSONResponse(out)

    async def resolve(self, request: Request, params: dict[str, str]) -> Response:
        repo = self._repo(request, params)
        commit = repo.resolve(params["rev"])
        entry = commit.tree.get(params["path"])
        if entry is None:
            raise HubHTTPError(404, f"{params['path']} does not exist", "EntryNotFound")
        data = self.store.blob_path(entry.sha256).read_bytes()
        etag = entry.sha256 if entry.lfs else entry.oid
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.id,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        status = 200
        range_header = request.headers.get("range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not match or (not match.group(1) and not match.group(2)):
                raise HubHTTPError(416, f"Bad range {range_header}")
            size = len(data)
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start, end = max(0, size - int(match.group(2))), size - 1
            if start >= size or start > end:
                headers["Content-Range"] = f"bytes */{size}"
                return Response(status_code=416, headers=headers)
            data = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            status = 206
        headers["Content-Length"] = str(len(data))
        body = b"" if request.method == "HEAD" else data
        return Response(body, status_code=status, headers=headers)


class HubServer:
    """The app under uvicorn in a daemon thread, on a socket the caller may have bound beforehand."""

    def __init__(
        self,
        root: Path | None = None,
        tokens: dict[str, str] | None = None,
        sock: socket.socket | None = None,
    ):
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="hub-api-")
        self.root = Path(root or self._tmp.name)  # type: ignore[union-attr]
        self.store = HubStore(self.root)
        self.app = HubApp(self.store, tokens or {"hf_test_token": "tester"})
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.app.base_url = self.url
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[tuple[str, str, str, int]]:
        return self.app.requests

    def start(self, timeout: float = 10.0) -> HubServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.sock]}, name="hub-api-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Hub API test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="hf_test_token")
    parser.add_argument("--user", default="tester")
    args = parser.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", args.port))
    server = HubServer(tokens={args.token: args.user}, sock=s).start()
    print(f"HF_ENDPOINT={server.url} HF_TOKEN={args.token} HF_HUB_DISABLE_XET=1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
