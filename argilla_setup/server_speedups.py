"""Behaviour-preserving speedups for the embedded argilla-server 2.8 (server and rq worker processes).

Measured with `benchmarks/bench_argilla.py` on SQLite (2 busy shared cores): pushing records went from
about 100 to 500-1,100 records/s, `/me/responses/bulk` from about 10 to 40-80 responses/s, and reading
rankings back from about 2,000 to about 9,000 records/s (the route below). Each patch
removes work whose result is unused, or caches something rebuilt on every call; none changes what the
API answers. argilla-server is pinned to 2.8.0, and `apply` checks the patched names exist, so an
upgrade fails loudly instead of silently running unpatched.

- `sqlite_wal`: the database in WAL mode with `synchronous=NORMAL`. Argilla commits once or twice per
  response; in the default rollback-journal mode every commit syncs the file several times.
- `type_adapters`: `Question.parsed_settings` and `MetadataProperty.parsed_settings` build a new pydantic
  `TypeAdapter` on every access, i.e. for every metadata key of every record pushed. One adapter each.
- `webhook_events`: before notifying a record/response event, argilla reloads the dataset with five
  relationships and serialises the whole record, even when no webhook is configured. The event is now
  built only when an enabled webhook subscribes to it (exactly the webhooks argilla would notify);
  the enabled webhooks are read once per database session instead of once per record.
- `validator_record`: record validation builds a throwaway ORM `Record` per pushed record (a quarter of
  the push's CPU, plus an SAWarning each); the validators only read its fields and dataset.
- `rankings_route`: a read-only listing of records with all responses that skips the ORM
  (`argilla_setup/rankings_route.py`); `argilla_setup.rankings` uses it when the server has it.

Call `apply()` in each process before the FastAPI app or the worker starts (idempotent).
"""

from __future__ import annotations

import importlib
from typing import Any

_applied: set[str] = set()
_LISTENED_EVENTS = "pickloop_listened_webhook_events"  # key in a session's `info` dict

# Modules that import `notify_*_event` by name, so each needs the guarded function.
_RECORD_NOTIFY_USERS = (
    "argilla_server.contexts.datasets",
    "argilla_server.contexts.records",
    "argilla_server.contexts.distribution",
    "argilla_server.bulk.records_bulk",
)
_RESPONSE_NOTIFY_USERS = ("argilla_server.contexts.datasets",)


def sqlite_wal() -> None:
    from argilla_server.settings import settings
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not settings.database_is_sqlite:
        return

    # Same hook argilla uses for `PRAGMA foreign_keys = ON` (argilla_server.database).
    @event.listens_for(Engine, "connect")
    def _wal(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def type_adapters() -> None:
    from argilla_server.models import database as models
    from pydantic import TypeAdapter

    question = TypeAdapter(models.QuestionSettings)
    metadata = TypeAdapter(models.MetadataPropertySettings)
    _require(models.Question, "parsed_settings")
    _require(models.MetadataProperty, "parsed_settings")
    models.Question.parsed_settings = property(lambda self: question.validate_python(self.settings))
    models.MetadataProperty.parsed_settings = property(lambda self: metadata.validate_python(self.settings))


def webhook_events() -> None:
    from argilla_server.contexts import webhooks

    def guarded(notify: Any) -> Any:
        async def notify_if_listened(db: Any, event: Any, obj: Any) -> list:
            # One lookup per database session (i.e. per request or job), not one per record.
            events = db.info.get(_LISTENED_EVENTS)
            if events is None:
                hooks = await webhooks.list_enabled_webhooks(db)
                events = db.info[_LISTENED_EVENTS] = {e for hook in hooks for e in hook.events}
            if event not in events:
                return []  # what argilla's enqueue_notify_events returns in this case
            return await notify(db, event, obj)

        notify_if_listened.__wrapped__ = notify  # type: ignore[attr-defined]
        return notify_if_listened

    records = importlib.import_module("argilla_server.webhooks.v1.records")
    responses = importlib.import_module("argilla_server.webhooks.v1.responses")
    record_notify = guarded(_require(records, "notify_record_event"))
    response_notify = guarded(_require(responses, "notify_response_event"))
    records.notify_record_event = record_notify
    responses.notify_response_event = response_notify
    for name in _RECORD_NOTIFY_USERS:
        module = importlib.import_module(name)
        _require(module, "notify_record_event_v1")
        module.notify_record_event_v1 = record_notify
    for name in _RESPONSE_NOTIFY_USERS:
        module = importlib.import_module(name)
        _require(module, "notify_response_event_v1")
        module.notify_response_event_v1 = response_notify


def rankings_route() -> None:
    """Mount `argilla_setup.rankings_route` on argilla's `/api/v1` app (server process only needs it)."""
    from argilla_server.api.routes import api_v1

    from argilla_setup.rankings_route import router

    api_v1.include_router(router)


def validator_record() -> None:
    from types import SimpleNamespace

    from argilla_server.validators import records as validators

    create = _require(validators, "RecordCreateValidator")
    _require(create, "validate")

    async def validate(cls: Any, record_create: Any, dataset: Any) -> None:
        # argilla builds `Record(fields=..., dataset=dataset)` here only to hand it to the suggestion
        # and response validators, which read `record.fields` and `record.dataset`; the ORM object
        # costs a quarter of a push and appends itself to `dataset.records` (an SAWarning per record).
        record = SimpleNamespace(fields=record_create.fields, dataset=dataset)
        cls._validate_fields(record_create.fields, dataset)
        cls._validate_metadata(record_create.metadata, dataset)
        cls._validate_suggestions(record_create.suggestions, dataset, record=record)
        cls._validate_vectors(record_create.vectors, dataset)
        await cls._validate_responses(record_create.responses, dataset, record=record)

    create.validate = classmethod(validate)


PATCHES = {
    "sqlite_wal": sqlite_wal,
    "type_adapters": type_adapters,
    "webhook_events": webhook_events,
    "validator_record": validator_record,
    "rankings_route": rankings_route,
}


def apply(names: tuple[str, ...] = tuple(PATCHES)) -> tuple[str, ...]:
    """Apply the named patches once per process; returns those applied by this call."""
    done = []
    for name in names:
        if name not in _applied:
            PATCHES[name]()
            _applied.add(name)
            done.append(name)
    return tuple(done)


def _require(owner: Any, name: str) -> Any:
    if not hasattr(owner, name):
        raise RuntimeError(
            f"argilla-server changed: {getattr(owner, '__name__', owner)!r} has no {name!r}; "
            "update argilla_setup/server_speedups.py for this version"
        )
    return getattr(owner, name)
