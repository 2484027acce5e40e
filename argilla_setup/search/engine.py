"""The project's persistent search engine for argilla-server 2.8: Elasticsearch's request layer on SQLite.

Why: argilla-server needs Elasticsearch or OpenSearch, and neither can be installed here. This engine
subclasses argilla-server's own `BaseElasticAndOpenSearchEngine`, so every query, mapping and update
is built by argilla's code exactly as for Elasticsearch; only the request primitives are ours. They
keep JSON documents in one SQLite file and answer with `argilla_setup.search.query`, an interpreter of
the query DSL that commons.py emits.

Importing this module registers `ENGINE_NAME`; the server and its rq worker import it first and run
with `ARGILLA_SEARCH_ENGINE=pickloop-sqlite` and `PICKLOOP_SEARCH_DB=<home>/search.sqlite3`. Both
processes share the file (WAL, busy timeout, one short transaction per write). Each process keeps a
parsed copy of every index it reads, refreshed incrementally from per-index version counters, so it
sees the other process's writes without re-reading everything.

Rebuild the index from the Argilla database (the server may keep running):

    PICKLOOP_SEARCH_DB=~/.pickloop/argilla/search.sqlite3 \\
    ARGILLA_DATABASE_URL=sqlite+aiosqlite:///$HOME/.pickloop/argilla/argilla.db \\
        python -c "from argilla_setup.search.engine import reindex; print(reindex())"
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

from argilla_server.models import Dataset, VectorSettings
from argilla_server.search_engine import SearchEngine
from argilla_server.search_engine.commons import (
    BaseElasticAndOpenSearchEngine,
    es_bool_query,
    es_field_for_vector_settings,
    es_ids_query,
    es_index_name_for_dataset,
)

from argilla_setup.search import query as dsl
from argilla_setup.search.query import Doc, IndexNotFoundError, Mapping, Snapshot

__all__ = ["ENGINE_NAME", "SEARCH_DB_ENV", "SQLiteSearchEngine", "reindex", "search_db_path"]

ENGINE_NAME = "pickloop-sqlite"
SEARCH_DB_ENV = "PICKLOOP_SEARCH_DB"

_LOGGER = logging.getLogger(__name__)


def search_db_path() -> Path:
    """The SQLite file: `$PICKLOOP_SEARCH_DB`, else `search.sqlite3` under argilla-server's home path."""
    configured = os.environ.get(SEARCH_DB_ENV)
    if configured:
        return Path(configured).expanduser()
    from argilla_server.settings import settings

    return Path(settings.home_path).expanduser() / "search.sqlite3"


# ---------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Serialise what the Elasticsearch client would: UUIDs, datetimes, enums, decimals, sets."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a search document")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    """`value` as plain JSON types, so queries compare like the documents they were serialised from."""
    return json.loads(_dumps(value))


# ---------------------------------------------------------------------------------------------------
# SQLite store
# ---------------------------------------------------------------------------------------------------

# Named migrations, run on every open (each once, in order, inside one write transaction).
_MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "m001_initial",
        [
            """CREATE TABLE indexes (
                name TEXT PRIMARY KEY,
                uid TEXT NOT NULL,
                mappings TEXT NOT NULL,
                settings TEXT NOT NULL,
                version INTEGER NOT NULL DEFAULT 0,
                delete_version INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE documents (
                seq INTEGER PRIMARY KEY,
                index_name TEXT NOT NULL,
                doc_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                source TEXT NOT NULL,
                UNIQUE (index_name, doc_id)
            )""",
            "CREATE INDEX documents_by_version ON documents (index_name, version)",
        ],
    ),
]


@dataclasses.dataclass
class _Cached:
    uid: str
    version: int
    delete_version: int
    mappings_json: str
    snapshot: Snapshot
    by_id: dict[str, Doc]


class _Store:
    """One SQLite file: per-thread connections, short transactions, a parsed copy of each index."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._migrated = False
        self._cache: dict[str, _Cached] = {}

    # -- connections and transactions --

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                if not self._migrated:
                    self._migrate(conn)
                    self._migrated = True
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
            for name, statements in _MIGRATIONS:
                if name in done:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _now()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _bump(conn: sqlite3.Connection, name: str, deleted: bool = False) -> int:
        row = conn.execute(
            "UPDATE indexes SET version = version + 1, delete_version = delete_version + ? "
            "WHERE name = ? RETURNING version",
            (1 if deleted else 0, name),
        ).fetchone()
        if row is None:
            raise IndexNotFoundError(f"no such index: {name}")
        return row[0]

    # -- index management --

    def create_index(self, name: str, mappings: dict[str, Any], settings: dict[str, Any]) -> None:
        """Create an index; an existing one keeps its documents and gains the new mappings."""
        mappings = _plain(mappings)
        if "properties" in mappings:
            mappings["properties"] = dsl.expand_dotted(mappings["properties"])
        with self._transaction(write=True) as conn:
            row = conn.execute("SELECT mappings FROM indexes WHERE name = ?", (name,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO indexes (name, uid, mappings, settings, created_at) VALUES (?, ?, ?, ?, ?)",
                    (name, uuid.uuid4().hex, _dumps(mappings), _dumps(settings), _now()),
                )
                return
            _LOGGER.warning("index %s already exists: merging mappings, keeping its documents", name)
            merged = json.loads(row[0])
            dsl.deep_merge(merged, _plain(mappings))
            conn.execute("UPDATE indexes SET mappings = ? WHERE name = ?", (_dumps(merged), name))
            self._bump(conn, name)

    def delete_index(self, name: str) -> None:
        with self._transaction(write=True) as conn:
            conn.execute("DELETE FROM documents WHERE index_name = ?", (name,))
            conn.execute("DELETE FROM indexes WHERE name = ?", (name,))

    def delete_indexes_except(self, keep: set[str]) -> list[str]:
        """Drop every index not in `keep` (stale ones whose dataset is gone); returns their names."""
        with self._transaction(write=True) as conn:
            stale = [r[0] for r in conn.execute("SELECT name FROM indexes") if r[0] not in keep]
            for name in stale:
                conn.execute("DELETE FROM documents WHERE index_name = ?", (name,))
                conn.execute("DELETE FROM indexes WHERE name = ?", (name,))
        return stale

    def index_exists(self, name: str) -> bool:
        with self._transaction(write=False) as conn:
            return conn.execute("SELECT 1 FROM indexes WHERE name = ?", (name,)).fetchone() is not None

    def put_mapping(self, name: str, properties: dict[str, Any]) -> None:
        with self._transaction(write=True) as conn:
            row = conn.execute("SELECT mappings FROM indexes WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise IndexNotFoundError(f"no such index: {name}")
            mappings = json.loads(row[0])
            dsl.deep_merge(mappings.setdefault("properties", {}), dsl.expand_dotted(_plain(properties)))
            conn.execute("UPDATE indexes SET mappings = ? WHERE name = ?", (_dumps(mappings), name))
            self._bump(conn, name)

    # -- documents --

    def bulk(self, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Index, update and delete documents in one transaction; returns the failed items, like the bulk API."""
        upserts: dict[str, list[tuple[str, str]]] = {}
        deletes: dict[str, list[str]] = {}
        updates: list[tuple[str, str, dict[str, Any]]] = []
        excludes: dict[str, list[str]] = {}  # `_source.excludes` of each index: never stored
        for action in actions:  # serialise before the transaction, so the write lock is held briefly
            op = action.get("_op_type", "index")
            index, doc_id = str(action["_index"]), str(action["_id"])
            if op in ("index", "create"):
                source = action.get("_source")
                if source is None:
                    source = {k: v for k, v in action.items() if not k.startswith("_")}
                if index not in excludes:
                    excludes[index] = self._source_excludes(index)
                if excludes[index]:
                    source = dsl.strip_excluded(_plain(source), excludes[index])
                upserts.setdefault(index, []).append((doc_id, _dumps(source)))
            elif op == "delete":
                deletes.setdefault(index, []).append(doc_id)
            elif op == "update":
                body = action.get("_source") or {k: v for k, v in action.items() if not k.startswith("_")}
                updates.append((index, doc_id, _plain(body)))
            else:
                raise dsl.UnsupportedQueryError(f"bulk operation {op!r} is not supported")
        errors: list[dict[str, Any]] = []
        with self._transaction(write=True) as conn:
            for index, doc_id, body in updates:
                try:
                    self._update(conn, index, doc_id, body)
                except (IndexNotFoundError, dsl.DocumentNotFoundError):
                    errors.append({"update": {"_index": index, "_id": doc_id, "status": 404}})
            for index, docs in upserts.items():
                if conn.execute("SELECT 1 FROM indexes WHERE name = ?", (index,)).fetchone() is None:
                    _LOGGER.warning(
                        "bulk indexing into missing index %s: creating it with dynamic mappings", index
                    )
                    conn.execute(
                        "INSERT INTO indexes (name, uid, mappings, settings, created_at) VALUES (?, ?, ?, ?, ?)",
                        (index, uuid.uuid4().hex, _dumps({"dynamic": True}), "{}", _now()),
                    )
                self._map_dynamic_fields(conn, index, docs)
                version = self._bump(conn, index)
                conn.executemany(
                    "INSERT INTO documents (index_name, doc_id, version, source) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (index_name, doc_id) DO UPDATE SET version = excluded.version, "
                    "source = excluded.source",
                    [(index, doc_id, version, source) for doc_id, source in docs],
                )
            for index, ids in deletes.items():
                if conn.execute("SELECT 1 FROM indexes WHERE name = ?", (index,)).fetchone() is None:
                    errors.extend({"delete": {"_index": index, "_id": i, "status": 404}} for i in ids)
                    continue
                self._bump(conn, index, deleted=True)
                conn.executemany(
                    "DELETE FROM documents WHERE index_name = ? AND doc_id = ?", [(index, i) for i in ids]
                )
        return errors

    @staticmethod
    def _map_dynamic_fields(conn: sqlite3.Connection, index: str, docs: list[tuple[str, str]]) -> None:
        """Add the mappings Elasticsearch's dynamic mapping would for new fields under dynamic objects."""
        (mappings_json,) = conn.execute("SELECT mappings FROM indexes WHERE name = ?", (index,)).fetchone()
        mappings = json.loads(mappings_json)
        mapping = Mapping(mappings)
        if not any(mapping.dynamic.values()):
            return
        changed = False
        for _, source in docs:
            added = dsl.dynamic_properties(mapping, json.loads(source))
            if added:
                dsl.deep_merge(mappings.setdefault("properties", {}), added)
                mapping = Mapping(mappings)
                changed = True
        if changed:
            conn.execute("UPDATE indexes SET mappings = ? WHERE name = ?", (_dumps(mappings), index))

    def _source_excludes(self, name: str) -> list[str]:
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT mappings FROM indexes WHERE name = ?", (name,)).fetchone()
        return ((json.loads(row[0]).get("_source") or {}).get("excludes") or []) if row else []

    def update(self, name: str, doc_id: str, body: dict[str, Any]) -> None:
        """Partial (`doc`) or scripted update of one document, read-modify-write in one transaction."""
        body = _plain(body)
        with self._transaction(write=True) as conn:
            self._update(conn, name, doc_id, body)

    def _update(self, conn: sqlite3.Connection, name: str, doc_id: str, body: dict[str, Any]) -> None:
        row = conn.execute(
            "SELECT source FROM documents WHERE index_name = ? AND doc_id = ?", (name, doc_id)
        ).fetchone()
        if row is None:
            if conn.execute("SELECT 1 FROM indexes WHERE name = ?", (name,)).fetchone() is None:
                raise IndexNotFoundError(f"no such index: {name}")
            raise dsl.DocumentNotFoundError(f"document {doc_id} not found in index {name}")
        source = dsl.apply_update(json.loads(row[0]), body)
        mappings = json.loads(
            conn.execute("SELECT mappings FROM indexes WHERE name = ?", (name,)).fetchone()[0]
        )
        source = dsl.strip_excluded(source, (mappings.get("_source") or {}).get("excludes") or [])
        version = self._bump(conn, name)
        conn.execute(
            "UPDATE documents SET source = ?, version = ? WHERE index_name = ? AND doc_id = ?",
            (_dumps(source), version, name, doc_id),
        )

    # -- reading --

    def snapshot(self, name: str) -> Snapshot:
        """The index as of now: the cached copy, refreshed with the rows written since it was read."""
        with self._transaction(write=False) as conn:
            row = conn.execute(
                "SELECT uid, mappings, version, delete_version FROM indexes WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise IndexNotFoundError(f"no such index: {name}")
            uid, mappings_json, version, delete_version = row
            with self._lock:
                cached = self._cache.get(name)
            if cached is not None and cached.uid == uid and cached.version == version:
                return cached.snapshot
            live_ids: set[str] | None = None
            if cached is None or cached.uid != uid:
                base: dict[str, Doc] = {}
                rows = conn.execute(
                    "SELECT seq, doc_id, source FROM documents WHERE index_name = ?", (name,)
                ).fetchall()
            else:
                base = cached.by_id
                rows = conn.execute(
                    "SELECT seq, doc_id, source FROM documents WHERE index_name = ? AND version > ?",
                    (name, cached.version),
                ).fetchall()
                if delete_version != cached.delete_version:
                    live_ids = {
                        r[0]
                        for r in conn.execute("SELECT doc_id FROM documents WHERE index_name = ?", (name,))
                    }
        by_id = dict(base) if live_ids is None else {k: d for k, d in base.items() if k in live_ids}
        for seq, doc_id, source in rows:
            by_id[doc_id] = Doc(id=doc_id, seq=seq, source=json.loads(source))
        if cached is not None and cached.uid == uid and cached.mappings_json == mappings_json:
            mapping = cached.snapshot.mapping
        else:
            mapping = Mapping(json.loads(mappings_json))
        snap = Snapshot(name=name, mapping=mapping, docs=sorted(by_id.values(), key=lambda d: d.seq))
        with self._lock:
            current = self._cache.get(name)
            if current is None or current.uid != uid or current.version < version:
                self._cache[name] = _Cached(uid, version, delete_version, mappings_json, snap, by_id)
        return snap

    def get_index(self, name: str) -> dict[str, Any]:
        """The index's mappings and (flat) settings, as Elasticsearch's get-index API reports them."""
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT mappings, settings FROM indexes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise IndexNotFoundError(f"no such index: {name}")
        settings = {
            (key if key.startswith("index.") else f"index.{key}"): str(value)
            for key, value in json.loads(row[1]).items()
        }
        return {"aliases": {}, "mappings": dsl.normalized_mappings(json.loads(row[0])), "settings": settings}

    def search(self, name: str, **request: Any) -> dict[str, Any]:
        return dsl.search(self.snapshot(name), **_plain(request))

    def term_counts(self, name: str, path: str) -> dict[Any, int]:
        return dict(dsl.term_counts(self.snapshot(name), path))

    def knn(self, name: str, field: str, vector: list[float], k: int, filter_query: dict | None) -> dict:
        return dsl.knn_search(self.snapshot(name), field, vector, k, _plain(filter_query))

    def info(self) -> dict[str, Any]:
        with self._transaction(write=False) as conn:
            indexes = conn.execute("SELECT count(*) FROM indexes").fetchone()[0]
            documents = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        return {
            "engine": ENGINE_NAME,
            "path": str(self.path),
            "indexes": indexes,
            "documents": documents,
            "sqlite": sqlite3.sqlite_version,
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


_STORES: dict[Path, _Store] = {}
_STORES_LOCK = threading.Lock()


def _store_for(path: Path) -> _Store:
    """One store per file per process, shared by every engine instance (the server makes one a request)."""
    resolved = path.expanduser().resolve()
    with _STORES_LOCK:
        store = _STORES.get(resolved)
        if store is None:
            store = _STORES[resolved] = _Store(resolved)
        return store


# ---------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------


@SearchEngine.register(ENGINE_NAME)
@dataclasses.dataclass
class SQLiteSearchEngine(BaseElasticAndOpenSearchEngine):
    """argilla-server's Elasticsearch engine logic, with requests answered from a SQLite file."""

    db_path: str = ""

    def __post_init__(self) -> None:
        self.store = _store_for(Path(self.db_path) if self.db_path else search_db_path())
        self.db_path = str(self.store.path)
        self.client = self.store  # the slot the base class keeps for its Elasticsearch client

    @classmethod
    async def new_instance(cls) -> SQLiteSearchEngine:
        return cls(number_of_shards=1, number_of_replicas=0)

    async def close(self) -> None:
        """Nothing to release: the store and its connections are shared for the life of the process."""

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self.store.info)
        except (sqlite3.Error, OSError) as error:
            _LOGGER.error("search engine %s is not usable: %s", self.db_path, error)
            return False
        return True

    async def info(self) -> dict:
        return await asyncio.to_thread(self.store.info)

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        """What the base class answers (a value count and a terms aggregation on `status`, two
        searches over every record), from one count per snapshot: a labeling wait polls this, and at
        100k records the two searches took hundreds of milliseconds a poll."""
        if dataset.is_draft:
            return {}
        counts = await asyncio.to_thread(self.store.term_counts, es_index_name_for_dataset(dataset), "status")
        return {"total": sum(counts.values()), **counts} if counts else {"total": 0}

    def _mapping_for_vector_settings(self, vector_settings: VectorSettings) -> dict:
        return {
            es_field_for_vector_settings(vector_settings): {
                "type": "dense_vector",
                "dims": vector_settings.dimensions,
                "index": True,
                "similarity": "cosine",
            }
        }

    async def _request_similarity_search(
        self,
        index: str,
        vector_settings: VectorSettings,
        value: list[float],
        k: int,
        excluded_id: UUID | None = None,
        query_filters: list[dict] | None = None,
    ) -> dict:
        filter_query = None
        if excluded_id or query_filters:  # the same pre-filter the Elasticsearch engine sends
            filter_query = es_bool_query(
                should=query_filters,
                minimum_should_match=len(query_filters) if query_filters else None,
                must_not=[es_ids_query([str(excluded_id)])] if excluded_id else None,
            )
        field = es_field_for_vector_settings(vector_settings)
        return await asyncio.to_thread(self.store.knn, index, field, list(value), k, filter_query)

    async def _create_index_request(self, index_name: str, mappings: dict, settings: dict) -> None:
        await asyncio.to_thread(self.store.create_index, index_name, _plain(mappings), _plain(settings))

    async def _delete_index_request(self, index_name: str) -> None:
        await asyncio.to_thread(self.store.delete_index, index_name)

    async def _update_document_request(self, index_name: str, id: str, body: dict) -> None:
        await asyncio.to_thread(self.store.update, index_name, str(id), body)

    async def put_index_mapping_request(self, index: str, mappings: dict) -> None:
        await asyncio.to_thread(self.store.put_mapping, index, mappings)

    async def _index_search_request(
        self,
        index: str,
        query: dict,
        size: int | None = None,
        from_: int | None = None,
        sort: dict | None = None,
        aggregations: dict | None = None,
    ) -> dict:
        return await asyncio.to_thread(
            self.store.search,
            index,
            query=query,
            size=size,
            from_=from_,
            sort=sort,
            aggregations=aggregations,
        )

    async def _index_exists_request(self, index_name: str) -> bool:
        return await asyncio.to_thread(self.store.index_exists, index_name)

    async def _bulk_op_request(self, actions: list[dict[str, Any]]) -> None:
        errors = await asyncio.to_thread(self.store.bulk, actions)
        for error in errors:
            self._LOGGER.error(f"Error in bulk operation: {error}")


# ---------------------------------------------------------------------------------------------------
# Reindexing
# ---------------------------------------------------------------------------------------------------


def reindex(database_url: str | None = None) -> int:
    """Rebuild every index from the Argilla database; returns the number of records indexed.

    Uses argilla-server's own `Reindexer` (not its typer CLI, which breaks with click>=8.2), then drops
    indexes whose dataset no longer exists. `database_url` defaults to `ARGILLA_DATABASE_URL`.
    """
    return asyncio.run(_reindex(database_url))


async def _reindex(database_url: str | None) -> int:
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.search_engine.commons import es_index_name_for_dataset
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    engine = None
    if database_url is None:
        from argilla_server.database import AsyncSessionLocal as sessions
    else:
        engine = create_async_engine(database_url)
        sessions = async_sessionmaker(bind=engine, autocommit=False, expire_on_commit=False)
    total = 0
    kept: set[str] = set()
    try:
        async with sessions() as db, SearchEngine.get_by_name(ENGINE_NAME) as search_engine:
            async for dataset in Reindexer.reindex_datasets(db, search_engine):
                kept.add(es_index_name_for_dataset(dataset))
                async for records in Reindexer.reindex_dataset_records(db, search_engine, dataset):
                    total += len(records)
            stale = await asyncio.to_thread(search_engine.store.delete_indexes_except, kept)
            if stale:
                _LOGGER.info("dropped %d stale search indexes: %s", len(stale), ", ".join(stale))
    finally:
        if engine is not None:
            await engine.dispose()
    return total
