"""Entry points of the embedded stack's processes: `python -m argilla_setup.entry bootstrap|serve|worker`.

They run with the environment `argilla_setup.server` prepares (ARGILLA_* settings, PICKLOOP_SEARCH_DB),
because argilla-server reads its settings at import time. Each imports the project's search engine
before argilla-server looks engines up by name. The argilla_server typer CLI is avoided on purpose:
it breaks with click>=8.2, so migrations, users and the worker are called directly.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
import sys


def _load_engine(*, server: bool = False) -> None:
    """Import the module that registers the search engine (overridable for other engines) and apply
    the guarded patches to argilla-server (see `argilla_setup.patches`; routes only in the server)."""
    os.umask(0o077)  # every file this process creates under the home: owner only
    importlib.import_module(os.environ.get("PICKLOOP_SEARCH_ENGINE_MODULE", "argilla_setup.search.engine"))
    from argilla_setup import patches

    patches.apply(server=server)


def bootstrap() -> None:
    """Migrate the database and make sure the owner exists; prints the owner's credentials as JSON.

    Idempotent: an existing owner keeps its password and API key, read from the 0600 file.
    """
    import alembic.config
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    _load_engine()
    alembic.config.main(argv=["-c", ALEMBIC_CONFIG_FILE, "--raiseerr", "upgrade", "head"])
    _covering_indexes()
    asyncio.run(_ensure_owner())


COVERING_INDEXES = {
    # `GET /datasets/{id}/users/progress` (each wait poll) reads a dataset's records' id and status:
    # from this index alone, instead of every record's row with its fields (4x faster at 100k records).
    "ix_pickloop_records_dataset_status": "records (dataset_id, status, id)",
}


def _covering_indexes() -> None:
    """Indexes pickloop adds to the embedded server's SQLite database (a speedup: argilla's
    migrations neither know nor mind them; `PICKLOOP_NO_SPEEDUPS=1` leaves them out)."""
    import sqlite3

    from argilla_server.settings import settings
    from sqlalchemy.engine import make_url

    from argilla_setup.patches import NO_SPEEDUPS_ENV

    url = make_url(settings.database_url)
    if os.environ.get(NO_SPEEDUPS_ENV) or not url.drivername.startswith("sqlite") or not url.database:
        return
    with sqlite3.connect(url.database) as conn:
        for name, target in COVERING_INDEXES.items():
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


async def _ensure_owner() -> None:
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole, Workspace

    from loop.fsutil import write_secret

    owner_file = os.environ["PICKLOOP_OWNER_FILE"]
    username = os.environ["PICKLOOP_OWNER"]
    workspace = os.environ.get("PICKLOOP_DEFAULT_WORKSPACE", "pickloop")
    async with AsyncSessionLocal() as db:
        user = await accounts.get_user_by_username(db, username)
        if user is not None:
            try:
                with open(owner_file, encoding="utf-8") as fh:
                    stored = json.load(fh)
            except (OSError, ValueError):
                stored = {}
            if stored.get("api_key") != user.api_key:
                raise SystemExit(
                    f"owner {username!r} exists in the database but {owner_file} is missing or stale; "
                    "remove the server home to start afresh"
                )
            json.dump({"created": False}, sys.stdout)
            return
        password = secrets.token_urlsafe(18)
        api_key = "pl." + secrets.token_urlsafe(32)
        # The file first: if creating the user fails, the next start simply writes a new one.
        record = {"api_url": os.environ["PICKLOOP_API_URL"], "username": username, "password": password}
        write_secret(owner_file, json.dumps({**record, "api_key": api_key}, indent=2) + "\n")
        ws = await Workspace.get_by(db, name=workspace) or await accounts.create_workspace(
            db, {"name": workspace}
        )
        await User.create(
            db,
            first_name=username,
            username=username,
            role=UserRole.owner,
            password_hash=accounts.hash_password(password),
            api_key=api_key,
            workspaces=[ws],
        )
    json.dump({"created": True}, sys.stdout)


def serve() -> None:
    """argilla-server's FastAPI app under uvicorn; `/api/v1/status` reports the search engine too."""
    import uvicorn

    _load_engine(server=True)
    from argilla_server._app import app

    uvicorn.run(
        app,
        host=os.environ.get("PICKLOOP_HOST", "127.0.0.1"),
        port=int(os.environ["PICKLOOP_PORT"]),
        log_level=os.environ.get("PICKLOOP_LOG_LEVEL", "warning"),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def worker() -> None:
    """One rq worker on argilla's queues (webhooks, record-status jobs).

    A `SimpleWorker` runs each job in this process instead of forking a work horse per job: jobs are
    short, and not forking keeps webhook delivery under a second (the fork re-imports nothing, but
    copying a process that holds argilla-server costs hundreds of milliseconds a job).
    """
    _load_engine()
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import SimpleWorker

    name = f"pickloop-{os.getpid()}"
    SimpleWorker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION, name=name).work(
        with_scheduler=False
    )


def reindex() -> None:
    from argilla_setup.search.engine import reindex as run_reindex

    count = run_reindex()
    json.dump({"records": count}, sys.stdout)


COMMANDS = {"bootstrap": bootstrap, "serve": serve, "worker": worker, "reindex": reindex}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]]()  # argv[2:] carries "--home DIR" only as the marker `stop` checks
