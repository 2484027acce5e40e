"""Behaviour-preserving speedups for the embedded argilla-server 2.8 (server and rq worker processes).

Measured with `benchmarks/bench_argilla.py` on SQLite (2 busy shared cores): pushing records went from
about 100 to 500-1,100 records/s, `/me/responses/bulk` from about 10 to 40-80 responses/s, and reading
rankings back from about 2,000 to about 9,000 records/s (`rankings_route.py`). Each patch removes work
whose result is unused, or caches something rebuilt on every call; none changes what the API answers.
Each is guarded (see `argilla_setup.patches`): argilla-server must be 2.8.0 and every upstream function
listed in its `upstream` must hash as recorded, else it is skipped with a warning. `PICKLOOP_NO_SPEEDUPS=1`
skips them all.

- `sqlite_wal`: the database in WAL mode with `synchronous=NORMAL`. Argilla commits once or twice per
  response; in the default rollback-journal mode every commit syncs the file several times.
  Durability, exactly: WAL+NORMAL never corrupts the database and loses nothing when a process crashes
  or is killed (committed transactions are in the WAL file, which the OS holds). On power loss or an
  OS crash the last transactions committed since the previous WAL checkpoint sync (by default every
  1000 pages) may be rolled back: the latest responses or pushed records. A push is re-run by upsert
  and labelers' lost responses show as pending again, so pickloop accepts this; set
  `PICKLOOP_NO_SPEEDUPS=1` for FULL synchronous rollback-journal commits.
- `type_adapters`: `Question.parsed_settings` and `MetadataProperty.parsed_settings` build a new pydantic
  `TypeAdapter` on every access, i.e. for every metadata key of every record pushed. One adapter each.
- `webhook_events`: before notifying a record/response event, argilla reloads the dataset with five
  relationships and serialises the whole record, even when no webhook is configured. The event is now
  built only when an enabled webhook subscribes to it (exactly the webhooks argilla would notify);
  the enabled webhooks are read once per database session instead of once per record.
- `validator_record`: record validation builds a throwaway ORM `Record` per pushed record (a quarter of
  the push's CPU, plus an SAWarning each); the validators only read its fields and dataset.

Call `argilla_setup.patches.apply()` in each process before the FastAPI app or the worker starts.
"""

from __future__ import annotations

import importlib
from typing import Any

from argilla_setup.patches import Patch, _require, hit

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
        hit("sqlite_wal")
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

    def parsed(adapter: Any) -> property:
        def get(self: Any) -> Any:
            hit("type_adapters")
            return adapter.validate_python(self.settings)

        return property(get)

    models.Question.parsed_settings = parsed(question)
    models.MetadataProperty.parsed_settings = parsed(metadata)


def webhook_events() -> None:
    from argilla_server.contexts import webhooks

    def guarded(notify: Any) -> Any:
        async def notify_if_listened(db: Any, event: Any, obj: Any) -> list:
            hit("webhook_events")
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


def validator_record() -> None:
    from types import SimpleNamespace

    from argilla_server.validators import records as validators

    create = _require(validators, "RecordCreateValidator")
    _require(create, "validate")

    async def validate(cls: Any, record_create: Any, dataset: Any) -> None:
        # argilla builds `Record(fields=..., dataset=dataset)` here only to hand it to the suggestion
        # and response validators, which read `record.fields` and `record.dataset`; the ORM object
        # costs a quarter of a push and appends itself to `dataset.records` (an SAWarning per record).
        hit("validator_record")
        record = SimpleNamespace(fields=record_create.fields, dataset=dataset)
        cls._validate_fields(record_create.fields, dataset)
        cls._validate_metadata(record_create.metadata, dataset)
        cls._validate_suggestions(record_create.suggestions, dataset, record=record)
        cls._validate_vectors(record_create.vectors, dataset)
        await cls._validate_responses(record_create.responses, dataset, record=record)

    create.validate = classmethod(validate)


_DB = "argilla_server.models.database"
_WEBHOOKS = "argilla_server.webhooks.v1"
PATCHES = [
    Patch(
        "sqlite_wal",
        sqlite_wal,
        # argilla's own connect hook (PRAGMA foreign_keys), which this one sits beside.
        {
            "argilla_server.database:set_sqlite_pragma": "fa3e22a3956238c24a109529a59e1b725b0efad064b1e4f708cf7c90df289979"
        },
    ),
    Patch(
        "type_adapters",
        type_adapters,
        {
            f"{_DB}:Question.parsed_settings": "5d2f427fe4651063e68bdc8ccfb9bf137696c5c3bf2896ff6ac78338dcbff3b2",
            f"{_DB}:MetadataProperty.parsed_settings": "263c9f47b2de783299575b020bf4fbd621bcee2501a903a5634e62d4445155b9",
        },
    ),
    Patch(
        "webhook_events",
        webhook_events,
        {
            f"{_WEBHOOKS}.records:notify_record_event": "92209f75197bb9fd306859fbadcf4465bf9c221fe197f3f78a40b3a95a1ddaa8",
            f"{_WEBHOOKS}.responses:notify_response_event": "35e9c0c3f9097464ebb049b54e071b5a5dc185c03f73abddae9d469da9002114",
            # "no enabled webhook listens: return []" is copied from here.
            "argilla_server.jobs.webhook_jobs:enqueue_notify_events": "fcd5b6b37c62b788eb90a50c7d92ef1ef0987d43cf0a5d2ebde048952a5da07b",
        },
    ),
    Patch(
        "validator_record",
        validator_record,
        {
            "argilla_server.validators.records:RecordCreateValidator.validate": "9cd5d9a0856d50d3a436bb1dd9b94ff01047c9b3959ef8e40807682698c99d70"
        },
    ),
]
