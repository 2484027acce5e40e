"""The SQLite search engine, driven through argilla-server's own high-level engine API.

Records, responses and suggestions are argilla-server ORM objects built in memory (no database), so
every query here is the exact one argilla-server builds for Elasticsearch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from pathlib import Path
from uuid import UUID

import numpy
import pytest
from argilla_server.enums import (
    DatasetStatus,
    RecordStatus,
    ResponseStatus,
    ResponseStatusFilter,
    SimilarityOrder,
    SortOrder,
)
from argilla_server.models import (
    Dataset,
    Field,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)

from argilla_setup.search import engine as se
from argilla_setup.search.query import (
    DocumentNotFoundError,
    IndexNotFoundError,
    UnsupportedQueryError,
    parse_simple_query,
)


def uid(n: int) -> UUID:
    return UUID(int=n)


ALICE = User(id=uid(1001), username="alice", first_name="alice")
BOB = User(id=uid(1002), username="bob", first_name="bob")
T0 = dt.datetime(2026, 1, 1, 12, 0, 0)

# (prompt, answer, metadata, record status)
ROWS = [
    (
        "How do I sort a list in Python?",
        "Use sorted() or list.sort().",
        {"source": "faq", "length": 5, "score": 0.9},
    ),
    (
        "What is a tuple?",
        "An immutable sequence. Python tuples are hashable.",
        {"source": "faq", "length": 12},
    ),
    (
        "Why is Python slow?",
        "Python is interpreted; python code runs in a VM.",
        {"source": "web", "length": 20, "score": 0.1},
    ),
    ("How to read a file?", "Use open() in a with block.", {"source": "web", "length": 8, "score": 0.5}),
    (
        "What is a decorator?",
        "A function wrapping another function.",
        {"source": "book", "length": 30, "score": 0.7},
    ),
    (
        "How do I install packages?",
        "Use pip install name.",
        {"source": ["faq", "web"], "length": 15, "score": 0.3},
    ),
]
VECTORS = [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1], [0.5, 0.5, 0]]


def build_dataset() -> tuple[Dataset, list[Record], dict[str, Question], VectorSettings]:
    """A published dataset with 6 records; alice answered 0-2, bob 1 and 3, record 1 is completed."""
    dataset = Dataset(id=uid(1), name="ds", status=DatasetStatus.ready, distribution={"strategy": "overlap"})
    dataset.fields = [
        Field(id=uid(11), name="prompt", title="Prompt", settings={"type": "text", "use_markdown": False}),
        Field(id=uid(12), name="answer", title="Answer", settings={"type": "text", "use_markdown": False}),
    ]
    questions = {
        "rating": Question(id=uid(21), name="rating", title="R", settings={"type": "rating", "options": []}),
        "label": Question(
            id=uid(22), name="label", title="L", settings={"type": "label_selection", "options": []}
        ),
        "ranking": Question(
            id=uid(23), name="ranking", title="K", settings={"type": "ranking", "options": []}
        ),
    }
    dataset.questions = list(questions.values())
    dataset.metadata_properties = [
        MetadataProperty(id=uid(31), name="source", title="S", settings={"type": "terms", "values": None}),
        MetadataProperty(id=uid(32), name="length", title="L", settings={"type": "integer"}),
        MetadataProperty(id=uid(33), name="score", title="S", settings={"type": "float"}),
    ]
    vs = VectorSettings(id=uid(41), name="emb", title="E", dimensions=3)
    dataset.vectors_settings = [vs]
    records = []
    for i, (prompt, answer, metadata) in enumerate(ROWS):
        record = Record(
            id=uid(100 + i),
            external_id=f"ext-{i}",
            fields={"prompt": prompt, "answer": answer},
            metadata_=metadata,
            status=RecordStatus.completed if i == 1 else RecordStatus.pending,
            inserted_at=T0 + dt.timedelta(minutes=i),
            updated_at=T0 + dt.timedelta(minutes=10 - i),
            dataset=dataset,
        )
        record.vectors = [
            Vector(id=uid(500 + i), value=VECTORS[i], vector_settings=vs, vector_settings_id=vs.id)
        ]
        records.append(record)
    answers = [  # (record, user, status, rating, label)
        (0, ALICE, ResponseStatus.submitted, 5, "good"),
        (1, ALICE, ResponseStatus.submitted, 4, "good"),
        (2, ALICE, ResponseStatus.draft, 2, "bad"),
        (1, BOB, ResponseStatus.submitted, 3, "bad"),
        (3, BOB, ResponseStatus.discarded, None, None),
    ]
    for n, (i, user, status, rating, label) in enumerate(answers):
        values = {} if rating is None else {"rating": {"value": rating}, "label": {"value": label}}
        values["ranking"] = {"value": [{"value": "a", "rank": 1}]}
        Response(id=uid(600 + n), values=values, status=status, user_id=user.id, record=records[i])
    Suggestion(
        id=uid(700), value="good", score=0.8, agent="model-a", question=questions["label"], record=records[4]
    )
    Suggestion(
        id=uid(701), value=3, score=0.4, agent="model-b", question=questions["rating"], record=records[5]
    )
    return dataset, records, questions, vs


def ids(result) -> list[int]:
    return [item.record_id.int - 100 for item in result.items]


@pytest.fixture()
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "search" / "search.sqlite3"
    monkeypatch.setenv(se.SEARCH_DB_ENV, str(path))
    return path


def new_engine() -> se.SQLiteSearchEngine:
    """An engine as a fresh process would have it: no shared store, no cached index."""
    se._STORES.clear()
    return asyncio.run(se.SQLiteSearchEngine.new_instance())


@pytest.fixture()
def indexed(db_file: Path):
    engine = new_engine()
    dataset, records, questions, vs = build_dataset()

    async def setup() -> None:
        await engine.create_index(dataset)
        await engine.index_records(dataset, records)

    asyncio.run(setup())
    return engine, dataset, records, questions, vs


def run(coro):
    return asyncio.run(coro)


def test_engine_registered_and_reports_health(indexed, db_file: Path) -> None:
    engine = indexed[0]
    assert SearchEngine.registered_classes[se.ENGINE_NAME] is se.SQLiteSearchEngine
    assert run(engine.ping()) is True
    info = run(engine.info())
    assert info["engine"] == "pickloop-sqlite"
    assert info["path"] == str(db_file.resolve())
    assert (info["indexes"], info["documents"]) == (1, 6)
    journal = sqlite3.connect(db_file).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_metadata_record_filters_sort_and_pagination(indexed) -> None:
    engine, dataset, *_ = indexed

    def search(**kw):
        return run(engine.search(dataset, **kw))

    faq = TermsFilter(scope=MetadataFilterScope(metadata_property="source"), values=["faq"])
    assert ids(search(filter=faq)) == [0, 1, 5]  # a list value matches any of its terms
    length = RangeFilter(scope=MetadataFilterScope(metadata_property="length"), ge=8, le=20)
    assert ids(search(filter=length)) == [1, 2, 3, 5]
    both = AndFilter(filters=[faq, length])
    assert ids(search(filter=both)) == [1, 5]
    pending = TermsFilter(scope=RecordFilterScope(property="status"), values=["pending"])
    assert search(filter=pending).total == 5

    by_score = [Order(scope=MetadataFilterScope(metadata_property="score"), order=SortOrder.desc)]
    assert ids(search(sort=by_score)) == [0, 4, 3, 5, 2, 1]  # record 1 has no score: last
    by_score_asc = [Order(scope=MetadataFilterScope(metadata_property="score"), order=SortOrder.asc)]
    assert ids(search(sort=by_score_asc)) == [2, 5, 3, 4, 0, 1]
    by_updated = [Order(scope=RecordFilterScope(property="updated_at"), order=SortOrder.asc)]
    assert ids(search(sort=by_updated)) == [5, 4, 3, 2, 1, 0]
    by_source = [
        Order(scope=MetadataFilterScope(metadata_property="source"), order=SortOrder.asc),
        Order(scope=RecordFilterScope(property="inserted_at"), order=SortOrder.desc),
    ]
    assert ids(search(sort=by_source)) == [4, 5, 1, 0, 3, 2]  # ["faq","web"] sorts by its min, "faq"

    since = RangeFilter(scope=RecordFilterScope(property="inserted_at"), ge="2026-01-01T12:02:00", le=None)
    assert ids(search(filter=since)) == [2, 3, 4, 5]
    until = RangeFilter(scope=RecordFilterScope(property="inserted_at"), le="2026-01-01T13:00:30+01:00")
    assert ids(search(filter=until)) == [0]  # naive datetimes are UTC, as Elasticsearch reads them

    page = search(sort=by_updated, offset=2, limit=3)
    assert (ids(page), page.total) == ([3, 2, 1], 6)
    assert all(item.score is None for item in page.items)  # like Elasticsearch: no scores when sorted


def test_response_filters_per_user(indexed) -> None:
    engine, dataset, *_ = indexed

    def status_filter(values: list[str], user: User | None) -> list[int]:
        flt = TermsFilter(scope=ResponseFilterScope(property="status", user=user), values=list(values))
        return sorted(ids(run(engine.search(dataset, filter=flt))))

    assert status_filter([ResponseStatusFilter.pending], ALICE) == [3, 4, 5]
    assert status_filter([ResponseStatusFilter.submitted], ALICE) == [0, 1]
    assert status_filter([ResponseStatusFilter.draft], ALICE) == [2]
    assert status_filter([ResponseStatusFilter.pending, ResponseStatusFilter.draft], ALICE) == [2, 3, 4, 5]
    assert status_filter([ResponseStatusFilter.pending], BOB) == [0, 2, 4, 5]
    assert status_filter([ResponseStatusFilter.discarded], BOB) == [3]
    assert status_filter([ResponseStatusFilter.pending], None) == [4, 5]  # nobody responded
    assert status_filter([ResponseStatusFilter.submitted], None) == [0, 1]

    rating = RangeFilter(scope=ResponseFilterScope(question="rating", user=BOB), ge=3, le=5)
    assert ids(run(engine.search(dataset, filter=rating))) == [1]
    label = TermsFilter(scope=ResponseFilterScope(question="label"), values=["bad"])
    assert ids(run(engine.search(dataset, filter=label))) == [1, 2]
    suggested = TermsFilter(scope=SuggestionFilterScope(question="label", property="value"), values=["good"])
    assert ids(run(engine.search(dataset, filter=suggested))) == [4]
    agent = TermsFilter(scope=SuggestionFilterScope(question="rating", property="agent"), values=["model-b"])
    assert ids(run(engine.search(dataset, filter=agent))) == [5]

    by_rating = [Order(scope=ResponseFilterScope(question="rating"), order=SortOrder.desc)]
    assert ids(run(engine.search(dataset, sort=by_rating))) == [0, 1, 2, 3, 4, 5]  # avg of 4 and 3 = 3.5
    by_bob = [Order(scope=ResponseFilterScope(question="rating", user=BOB), order=SortOrder.desc)]
    assert ids(run(engine.search(dataset, sort=by_bob)))[:1] == [1]


def test_text_search(indexed) -> None:
    engine, dataset, *_ = indexed

    def text(q: str, field: str | None = None) -> list[int]:
        return ids(run(engine.search(dataset, query=TextQuery(q=q, field=field))))

    # BM25: record 2 says "python" three times, in short fields; ties keep insertion order
    assert text("python") == [2, 1, 0]
    assert text("python", field="prompt") == [2, 0]
    assert text("python tuples") == [1]  # default operator AND
    assert text("python | decorator") == [2, 4, 1, 0]
    assert text("python -slow") == [1, 0]
    assert text('"immutable sequence"') == [1]
    assert text('"sequence immutable"') == []
    assert text("decor*") == [4]
    assert text("pythn~1") == [2, 0, 1]  # fuzzy terms score 1 per matching field; ties: insertion order
    assert text("pyhton~1") == []  # commons turns fuzzy transpositions off: that is 2 edits
    assert text("file", field="answer") == []
    result = run(engine.search(dataset, query="install"))
    assert ids(result) == [5] and result.items[0].score > 0


def test_per_user_random_order_is_a_stable_shuffle(indexed) -> None:
    engine, dataset, *_ = indexed
    alice = ids(run(engine.search(dataset, user_id=str(ALICE.id))))
    bob = ids(run(engine.search(dataset, user_id=str(BOB.id))))
    assert sorted(alice) == sorted(bob) == list(range(6))
    assert alice == ids(run(engine.search(dataset, user_id=str(ALICE.id))))
    assert alice != bob
    assert alice[2:4] == ids(run(engine.search(dataset, user_id=str(ALICE.id), offset=2, limit=2)))


def test_progress_and_metrics(indexed) -> None:
    engine, dataset, *_ = indexed
    assert run(engine.get_dataset_progress(dataset)) == {"total": 6, "pending": 5, "completed": 1}
    # As on Elasticsearch: statuses of every response on the records the user answered, once per record.
    assert run(engine.get_dataset_user_progress(dataset, ALICE)) == {"total": 3, "submitted": 2, "draft": 1}
    assert run(engine.get_dataset_user_progress(dataset, BOB)) == {"total": 2, "discarded": 1, "submitted": 1}

    source, length, score = dataset.metadata_properties
    terms = run(engine.compute_metrics_for(source))
    assert terms == TermsMetrics(
        total=7,
        values=[
            TermsMetrics.TermCount(term="faq", count=3),
            TermsMetrics.TermCount(term="web", count=3),
            TermsMetrics.TermCount(term="book", count=1),
        ],
    )
    assert run(engine.compute_metrics_for(length)) == IntegerMetadataMetrics(min=5, max=30)
    # `float` fields keep float32 doc values, as in Elasticsearch: 0.1 comes back as 0.10000000149011612.
    f32 = lambda x: float(numpy.float32(x))  # noqa: E731
    assert run(engine.compute_metrics_for(score)) == FloatMetadataMetrics(min=f32(0.1), max=f32(0.9))


def test_scripted_updates_then_search(indexed) -> None:
    engine, dataset, records, questions, _ = indexed
    submitted_by_bob = TermsFilter(
        scope=ResponseFilterScope(property="status", user=BOB), values=["submitted"]
    )

    def bob_submitted() -> list[int]:
        flt = TermsFilter(scope=submitted_by_bob.scope, values=list(submitted_by_bob.values))
        return ids(run(engine.search(dataset, filter=flt)))

    assert bob_submitted() == [1]
    response = Response(
        id=uid(650), values={"rating": {"value": 1}}, status=ResponseStatus.submitted, user_id=BOB.id
    )
    response.record = records[4]
    run(engine.update_record_response(response))
    assert bob_submitted() == [1, 4]
    response.status = ResponseStatus.discarded  # same response id: replaced, not added
    run(engine.update_record_response(response))
    assert bob_submitted() == [1]
    assert run(engine.get_dataset_user_progress(dataset, BOB)) == {"total": 3, "discarded": 2, "submitted": 1}
    run(engine.delete_record_response(response))
    assert run(engine.get_dataset_user_progress(dataset, BOB))["total"] == 2

    run(engine.partial_record_update(records[0], status=RecordStatus.completed))
    assert run(engine.get_dataset_progress(dataset)) == {"total": 6, "completed": 2, "pending": 4}

    label_good = TermsFilter(scope=SuggestionFilterScope(question="label", property="value"), values=["good"])
    suggestion = Suggestion(id=uid(702), value="good", score=0.2, agent="x", question=questions["label"])
    suggestion.record = records[5]
    suggestion.record_id = records[5].id
    run(engine.update_record_suggestion(suggestion))
    assert ids(run(engine.search(dataset, filter=label_good))) == [4, 5]
    agent_b = TermsFilter(
        scope=SuggestionFilterScope(question="rating", property="agent"), values=["model-b"]
    )
    assert ids(run(engine.search(dataset, filter=agent_b))) == [5]  # merged: the rating suggestion stays
    run(engine.delete_record_suggestion(suggestion))
    assert ids(run(engine.search(dataset, filter=label_good))) == [4]

    run(engine.delete_records(dataset, records[:2]))
    assert ids(run(engine.search(dataset))) == [2, 3, 4, 5]
    with pytest.raises(DocumentNotFoundError):
        run(engine.partial_record_update(records[0], status=RecordStatus.pending))


def test_similarity_search(indexed) -> None:
    engine, dataset, records, _, vs = indexed
    result = run(engine.similarity_search(dataset, vs, value=[1, 0, 0], max_results=3))
    assert ids(result) == [0, 1, 5]
    assert result.items[0].score == pytest.approx(1.0)  # Elasticsearch's (1 + cosine) / 2
    by_record = run(engine.similarity_search(dataset, vs, record=records[2], max_results=2))
    assert ids(by_record) == [3, 5]  # the record itself is excluded
    least = run(engine.similarity_search(dataset, vs, value=[1, 0, 0], order=SimilarityOrder.least_similar))
    assert ids(least)[:3] == [2, 3, 4] and ids(least)[-1] == 0
    web = TermsFilter(scope=MetadataFilterScope(metadata_property="source"), values=["web"])
    filtered = run(engine.similarity_search(dataset, vs, value=[1, 0, 0], filter=web, query="python"))
    assert ids(filtered) == [2]
    assert ids(run(engine.similarity_search(dataset, vs, value=[1, 0, 0], threshold=0.9))) == [0, 1]


def test_persistence_and_writes_from_another_process(indexed) -> None:
    engine, dataset, records, *_ = indexed
    by_score = [Order(scope=MetadataFilterScope(metadata_property="score"), order=SortOrder.desc)]
    before = ids(run(engine.search(dataset, sort=by_score)))
    progress = run(engine.get_dataset_progress(dataset))

    other = new_engine()  # a new process: new store, connections and cache on the same file
    assert ids(run(other.search(dataset, sort=by_score))) == before
    assert run(other.get_dataset_progress(dataset)) == progress

    # The first engine's cached copy sees the other's writes: upserts, updates and deletes.
    records[2].metadata_ = {"source": "web", "score": 0.95}
    run(other.index_records(dataset, [records[2]]))
    run(other.delete_records(dataset, [records[0]]))
    run(other.partial_record_update(records[4], status=RecordStatus.completed))
    assert ids(run(engine.search(dataset, sort=by_score))) == [2, 4, 3, 5, 1]
    assert run(engine.get_dataset_progress(dataset)) == {"total": 5, "completed": 2, "pending": 3}

    run(other.delete_index(dataset))
    with pytest.raises(IndexNotFoundError):
        run(engine.search(dataset))


def test_unsupported_constructs_raise() -> None:
    from argilla_setup.search.query import Mapping, Snapshot, apply_update, search

    snap = Snapshot(name="x", mapping=Mapping({"properties": {"a": {"type": "keyword"}}}), docs=[])
    with pytest.raises(UnsupportedQueryError, match="query_string"):
        search(snap, {"query_string": {"query": "a"}})
    with pytest.raises(UnsupportedQueryError, match="geo_distance"):
        search(snap, {"match_all": {}}, aggregations={"g": {"geo_distance": {"field": "a"}}})
    with pytest.raises(UnsupportedQueryError, match="script"):
        apply_update({}, {"script": {"source": "ctx._source.a = 1"}})


def test_interpreter_details() -> None:
    """Elasticsearch semantics the engine-level tests do not reach."""
    from argilla_setup.search.query import Doc, Mapping, Snapshot, search

    mapping = Mapping(
        {
            "dynamic": "strict",
            "properties": {
                "n": {"type": "long"},
                "k": {"type": "keyword"},
                "obj": {"type": "object", "properties": {"x": {"type": "keyword"}}},
                "off": {"type": "object", "enabled": False},
                "items": {
                    "type": "nested",
                    "properties": {"u": {"type": "keyword"}, "v": {"type": "integer"}},
                },
            },
        }
    )
    sources = [
        {"n": 3, "k": "b", "obj": {"x": "1"}, "items": [{"u": "a", "v": 1}, {"u": "b", "v": 9}]},
        {"n": 1, "k": ["a", "c"], "off": {"k": "b"}, "items": [{"u": "a", "v": 5}]},
        {"k": "a", "obj": {}, "extra": "ignored"},
        {"n": "2", "k": True},
    ]
    snap = Snapshot("t", mapping, [Doc(id=f"d{i}", seq=i, source=s) for i, s in enumerate(sources)])

    def found(query=None, sort=None, **kw) -> list[str]:
        return [h["_id"] for h in search(snap, query, size=10, sort=sort, **kw)["hits"]["hits"]]

    assert found({"term": {"n": "2"}}) == ["d3"]  # "2" in the source is indexed as a long
    assert found({"terms": {"k": ["true", "c"]}}) == ["d1", "d3"]  # booleans become "true" in keywords
    assert found({"exists": {"field": "obj"}}) == ["d0"]  # an empty object does not exist
    assert found({"term": {"off.k": "b"}}) == [] and found({"term": {"extra": "ignored"}}) == []
    both = {"bool": {"must": [{"term": {"items.u": "a"}}, {"range": {"items.v": {"gte": 5}}}]}}
    assert found({"nested": {"path": "items", "query": both}}) == ["d1"]  # within one nested object
    assert found(both) == ["d0", "d1"]  # at the root, values of all nested objects mix (include_in_root)
    should = [{"term": {"k": "a"}}, {"term": {"k": "b"}}, {"term": {"n": 1}}]
    assert found({"bool": {"should": should, "minimum_should_match": "67%"}}) == ["d1"]
    assert found({"bool": {"should": should, "minimum_should_match": -2}}) == ["d1", "d0", "d2"]  # by score
    assert found(sort=[{"n": {"order": "asc", "missing": "_first"}}]) == ["d2", "d1", "d3", "d0"]
    nested_sort = {
        "items.v": {
            "order": "desc",
            "mode": "avg",
            "nested": {"path": "items", "filter": {"term": {"items.u": "a"}}},
        }
    }
    assert found(sort=[nested_sort]) == ["d1", "d0", "d2", "d3"]
    aggs = {"t": {"terms": {"field": "k", "size": 2}}, "s": {"stats": {"field": "n"}}}
    result = search(snap, None, size=0, aggregations=aggs)["aggregations"]
    assert result["t"]["buckets"] == [{"key": "a", "doc_count": 2}, {"key": "b", "doc_count": 1}]
    assert result["t"]["sum_other_doc_count"] == 2
    assert result["s"] == {"count": 3, "min": 1.0, "max": 3.0, "avg": 2.0, "sum": 6.0}


def test_simple_query_string_parser() -> None:
    tree = parse_simple_query('a | b c -"d e"~2 f*', "and")
    assert repr(tree) == (
        "BoolNode(op='and', children=[BoolNode(op='or', children=[Term(text='a', prefix=False, fuzzy=None), "
        "Term(text='b', prefix=False, fuzzy=None)]), Term(text='c', prefix=False, fuzzy=None), "
        "Not(child=Phrase(text='d e', slop=2)), Term(text='f', prefix=True, fuzzy=None)])"
    )
    assert parse_simple_query("  ", "and") is None


def test_reindex_from_argilla_database(tmp_path: Path, db_file: Path) -> None:
    """`reindex` rebuilds from a real argilla-server SQLite database and drops stale indexes."""
    from argilla_server.models import Workspace
    from argilla_server.models.base import DatabaseModel
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    database = tmp_path / "argilla.db"
    sync = create_engine(f"sqlite:///{database}")
    DatabaseModel.metadata.create_all(sync)
    dataset, records, questions, vs = build_dataset()
    dataset.workspace = Workspace(id=uid(2), name="ws")
    users = [
        User(id=u.id, username=u.username, first_name=u.username, password_hash="x") for u in (ALICE, BOB)
    ]
    with Session(sync, expire_on_commit=False) as session:
        session.add_all([*users, dataset])
        session.commit()
    sync.dispose()

    stale = new_engine()
    stale_dataset = Dataset(id=uid(9), name="gone", status=DatasetStatus.ready)
    stale_dataset.fields, stale_dataset.questions, stale_dataset.metadata_properties = [], [], []
    stale_dataset.vectors_settings = []
    run(stale.create_index(stale_dataset))

    assert se.reindex(f"sqlite+aiosqlite:///{database}") == 6
    engine = new_engine()
    assert run(engine.info())["indexes"] == 1
    assert run(engine.get_dataset_progress(dataset)) == {"total": 6, "pending": 5, "completed": 1}
    flt = TermsFilter(scope=ResponseFilterScope(property="status", user=ALICE), values=["submitted"])
    assert ids(run(engine.search(dataset, filter=flt))) == [0, 1]
    assert ids(run(engine.similarity_search(dataset, vs, value=[0, 0, 1], max_results=1))) == [4]


# ---------------------------------------------------------------------------------------------------
# End to end: the real embedded server (uvicorn + rq worker) running this engine, driven by the SDK.
# ---------------------------------------------------------------------------------------------------


def test_end_to_end_through_the_server(argilla_stack) -> None:
    import argilla as rg
    import httpx

    client = rg.Argilla(api_url=argilla_stack.api_url, api_key=argilla_stack.api_key)
    name = f"se-e2e-{uid(0).hex[:4]}-{dt.datetime.now().strftime('%H%M%S%f')}"
    workspace = rg.Workspace(name=name, client=client).create()
    settings = rg.Settings(
        fields=[rg.TextField("prompt"), rg.TextField("answer"), rg.ChatField("conversation")],
        questions=[rg.RatingQuestion("rating", values=[1, 2, 3, 4, 5])],
        metadata=[rg.TermsMetadataProperty("source"), rg.IntegerMetadataProperty("length")],
        vectors=[rg.VectorField("emb", dimensions=3)],
    )
    dataset = rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
    rows = [
        {
            "id": f"r{i}",
            "prompt": prompt,
            "answer": answer,
            "conversation": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "source": metadata["source"],
            "length": metadata["length"],
            "emb": VECTORS[i],
        }
        for i, (prompt, answer, metadata) in enumerate(ROWS)
    ]
    dataset.records.log(rows)

    api = httpx.Client(base_url=argilla_stack.api_url, headers={"X-Argilla-Api-Key": argilla_stack.api_key})

    def search(body: dict, me: bool = False, **params) -> list[str]:
        prefix = "/api/v1/me" if me else "/api/v1"
        response = api.post(f"{prefix}/datasets/{dataset.id}/records/search", json=body, params=params)
        assert response.status_code == 200, response.text
        return [item["record"]["external_id"] for item in response.json()["items"]]

    assert search({"query": {"text": {"q": "python"}}}) == ["r2", "r1", "r0"]
    assert len(search({"query": {"text": {"q": "assistant"}}})) == 6  # chat roles are keywords: exact,
    assert search({"query": {"text": {"q": "Assistant"}}}) == []  # case-sensitive, as on Elasticsearch
    assert search({"query": {"text": {"q": "decorator", "field": "conversation"}}}) == ["r4"]
    faq = {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "source"}, "values": ["faq"]}
    by_length = [{"scope": {"entity": "metadata", "metadata_property": "length"}, "order": "desc"}]
    assert search({"filters": {"and": [faq]}, "sort": by_length}) == ["r5", "r1", "r0"]
    assert search({"query": {"vector": {"name": "emb", "value": [1, 0, 0]}}}, limit=2) == ["r0", "r1"]

    # The owner answers r3; the record status update goes through the engine's partial update.
    records = {
        r["external_id"]: r["id"] for r in api.get(f"/api/v1/datasets/{dataset.id}/records").json()["items"]
    }
    answer = {"values": {"rating": {"value": 4}}, "status": "submitted"}
    assert api.post(f"/api/v1/records/{records['r3']}/responses", json=answer).status_code == 201
    submitted = {
        "type": "terms",
        "scope": {"entity": "response", "property": "status"},
        "values": ["submitted"],
    }
    pending = {**submitted, "values": ["pending"]}
    assert search({"filters": {"and": [submitted]}}, me=True) == ["r3"]
    assert sorted(search({"filters": {"and": [pending]}}, me=True)) == ["r0", "r1", "r2", "r4", "r5"]
    shuffled = search({}, me=True)
    assert sorted(shuffled) == [f"r{i}" for i in range(6)] and shuffled == search({}, me=True)
    progress = api.get(f"/api/v1/datasets/{dataset.id}/progress").json()
    assert (progress["total"], progress["completed"], progress["pending"]) == (6, 1, 5)
    metrics = api.get(f"/api/v1/me/datasets/{dataset.id}/metrics").json()
    assert metrics["responses"] == {"total": 6, "submitted": 1, "discarded": 0, "draft": 0, "pending": 5}

    # The SDK's own query path, and the server's status report.
    found = dataset.records(
        query=rg.Query(query="python", filter=rg.Filter(("metadata.source", "==", "web")))
    )
    assert [r.id for r in found] == ["r2"]
    status = api.get("/api/v1/status").json()["search_engine"]
    assert status["engine"] == "pickloop-sqlite" and status["documents"] >= 6
    # What a restarted server would read: the file on disk, opened by a fresh engine in this process.
    on_disk = se.SQLiteSearchEngine(
        number_of_shards=1, number_of_replicas=0, db_path=str(Path(argilla_stack.home) / "search.sqlite3")
    )
    index = f"rg.{dataset.id}"
    hits = run(on_disk._index_search_request(index, query={"match_all": {}}, size=100))["hits"]["hits"]
    assert sorted(hit["_id"] for hit in hits) == sorted(str(i) for i in records.values())
    statuses = run(on_disk._terms_aggregation(index, "status", {"match_all": {}}, size=10))
    assert {b["key"]: b["doc_count"] for b in statuses} == {"pending": 5, "completed": 1}


def test_source_excludes_are_not_stored(tmp_path) -> None:
    """Like Elasticsearch, fields named in `_source.excludes` (image fields) never reach the file."""
    store = se._store_for(tmp_path / "search.sqlite3")
    mappings = {"_source": {"excludes": ["fields.img"]}, "properties": {"id": {"type": "keyword"}}}
    store.create_index("ex", mappings, {})
    store.bulk(
        [
            {
                "_op_type": "index",
                "_index": "ex",
                "_id": "1",
                "_source": {"id": "1", "fields": {"img": "x", "t": "y"}},
            }
        ]
    )
    store.update("ex", "1", {"doc": {"fields": {"img": "z"}}})
    with store._transaction(write=False) as conn:
        (raw,) = conn.execute("SELECT source FROM documents WHERE doc_id = '1'").fetchone()
    assert json.loads(raw) == {"id": "1", "fields": {"t": "y"}}


def test_progress_counts_agree_with_the_aggregation_searches(indexed) -> None:
    """The engine answers dataset progress from one count per snapshot; the base class's two
    aggregation searches (what it replaces) give the same numbers before and after a change."""
    from argilla_server.search_engine.commons import BaseElasticAndOpenSearchEngine

    engine, dataset, records, *_ = indexed

    def both() -> tuple[dict, dict]:
        fast = run(engine.get_dataset_progress(dataset))
        return fast, run(BaseElasticAndOpenSearchEngine.get_dataset_progress(engine, dataset))

    fast, searched = both()
    assert fast == searched and fast["total"] == 6
    run(engine.partial_record_update(records[3], status=RecordStatus.completed))
    fast, searched = both()
    assert fast == searched and fast["completed"] == searched["completed"] > 1
