"""A round dataset end to end on the real embedded stack: the owner creates it from the schema and
logs records, annotators rank (with a tie), edit, draft and discard through the endpoints the UI uses,
and the owner reads the exact ranks back. Queue, filters, sorting, progress and metrics are checked
against what the labelers did; bad input must leave the server unchanged."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import argilla as rg
import pytest

from argilla_setup import rankings, schema
from argilla_setup.connection import Api, Connection, client
from argilla_setup.rankings import response_values
from argilla_setup.schema import SchemaOptions, round_settings
from argilla_setup.users import add_users
from loop.errors import ArgillaError, AuthError, ConfigError, NotFoundError

K = 4
N = 6
RUN = "flow"


def _uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Round:
    dataset_id: str
    dataset_name: str
    workspace: str
    ids: list[str]  # server record ids, in example order ex-0..ex-5
    owner: Api
    alice: Api
    bob: Api
    outsider: Api
    sdk_dataset: rg.Dataset


def _metadata(i: int) -> dict:
    meta = {
        schema.META_ROUND: 1,
        schema.META_SOURCE: "extra" if i in (1, 4) else "faq",
        schema.META_EXAMPLE_ID: f"ex-{i}",
        schema.META_TURN: i,
    }
    return meta


def _user_api(creds_file: Path) -> Api:
    creds = json.loads(creds_file.read_text())
    return Api(Connection(creds["api_url"], creds["api_key"]))


@pytest.fixture(scope="module")
def rnd(argilla_stack, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("flow-users")
    owner = Api(Connection(argilla_stack.api_url, argilla_stack.api_key))
    ws, other_ws = _uniq("flow-ws"), _uniq("other-ws")
    alice, bob = add_users(
        owner, [_uniq("alice"), _uniq("bob")], workspace=ws, create_workspace=True, home=home
    )
    (outsider,) = add_users(owner, [_uniq("olga")], workspace=other_ws, create_workspace=True, home=home)

    sdk = client(Connection(argilla_stack.api_url, argilla_stack.api_key))
    name = schema.dataset_name(_uniq(RUN), 1)
    dataset = rg.Dataset(name=name, workspace=ws, settings=round_settings(1, K, SchemaOptions()), client=sdk)
    dataset.create()
    records = [
        rg.Record(
            id=schema.record_external_id(RUN, 1, f"ex-{i}", i),
            fields={
                schema.QUESTION_FIELD: f"Question {i}?",
                **{schema.slot_name(s): f"answer {i}.{s}" for s in range(1, K + 1)},
            },
            metadata=_metadata(i),
            # "Better answer" starts as the top candidate (here on ex-4 only).
            suggestions=[rg.Suggestion(schema.BETTER_ANSWER_QUESTION, "answer 4.1")] if i == 4 else [],
        )
        for i in range(N)
    ]
    dataset.records.log(records)
    listed = owner.get(f"/api/v1/datasets/{dataset.id}/records", params={"limit": 100})["items"]
    by_ext = {r["external_id"]: r["id"] for r in listed}
    ids = [by_ext[schema.record_external_id(RUN, 1, f"ex-{i}", i)] for i in range(N)]

    a, b, o = (_user_api(u.credentials_file) for u in (alice, bob, outsider))
    # What the labelers do, through the UI's endpoints:
    # alice ranks ex-0 with a tie and writes a better answer (single-record POST, as the UI),
    rankings.submit_response(
        a,
        ids[0],
        response_values(
            ["candidate_2", ["candidate_1", "candidate_3"], "candidate_4"],
            better_answer="A fixed answer.",
            none_acceptable=True,
        ),
    )
    # saves ex-1 as a draft, then submits it with PUT /responses/{id},
    draft = rankings.submit_response(a, ids[1], response_values([["candidate_4", "candidate_3"]]), "draft")
    rankings.update_response(
        a, draft["id"], response_values(["candidate_4", "candidate_3", "candidate_2", "candidate_1"])
    )
    # and discards ex-2 (a broken question);
    rankings.submit_response(a, ids[2], None, "discarded")
    # bob submits ex-3 through the bulk endpoint the UI uses for "submit all".
    rankings.submit_responses(
        b,
        [
            (
                ids[3],
                response_values(["candidate_1", "candidate_2", "candidate_3", "candidate_4"]),
                "submitted",
            )
        ],
    )
    yield Round(str(dataset.id), name, ws, ids, owner, a, b, o, dataset)
    for api in (owner, a, b, o):
        api.close()


def _by_id(records: list[rankings.RecordRankings]) -> dict[str, rankings.RecordRankings]:
    return {r.id: r for r in records}


def test_owner_reads_ranks_back_exactly_with_ties(rnd: Round) -> None:
    pulled = rankings.pull_rankings(rnd.owner, rnd.dataset_id)
    assert len(pulled) == N
    assert [r.external_id for r in pulled] == [
        schema.record_external_id(RUN, 1, f"ex-{i}", i) for i in range(N)
    ]
    recs = _by_id(pulled)
    alice_name = rnd.alice.me()["username"]

    (r0,) = recs[rnd.ids[0]].responses
    assert r0.username == alice_name and r0.status == "submitted"
    assert r0.ranking == (("candidate_2", 1), ("candidate_1", 2), ("candidate_3", 2), ("candidate_4", 3))
    assert r0.best() == ("candidate_2",)
    assert r0.better_answer == "A fixed answer."
    assert r0.none_acceptable is True

    (r1,) = recs[rnd.ids[1]].responses
    assert r1.status == "submitted"
    assert r1.ranking == (("candidate_4", 1), ("candidate_3", 2), ("candidate_2", 3), ("candidate_1", 4))
    assert r1.better_answer is None and r1.none_acceptable is None

    (r2,) = recs[rnd.ids[2]].responses
    assert r2.status == "discarded" and r2.ranking == ()

    assert recs[rnd.ids[3]].responses[0].username == rnd.bob.me()["username"]
    assert [recs[i].status for i in rnd.ids] == [
        "completed",
        "completed",
        "pending",
        "completed",
        "pending",
        "pending",
    ]
    # The record's metadata comes back; fields come back for mapping slots to text.
    assert recs[rnd.ids[0]].metadata[schema.META_EXAMPLE_ID] == "ex-0"
    assert recs[rnd.ids[0]].fields["candidate_2"] == "answer 0.2"


def test_small_pages_give_the_same_result(rnd: Round) -> None:
    full = rankings.pull_rankings(rnd.owner, rnd.dataset_id)
    assert rankings.pull_rankings(rnd.owner, rnd.dataset_id, page_size=4) == full
    assert rankings.pull_rankings(rnd.owner, rnd.dataset_id, page_size=4, fast=False) == full


def test_embedded_server_has_the_fast_rankings_route(rnd: Round) -> None:
    """`argilla_setup.patches.apply()` mounts it; it must answer exactly what argilla's own listing does."""
    assert rankings.fast_listing(rnd.owner) == "/api/v1/x-pickloop/datasets/{dataset_id}/rankings"
    fast = rankings.pull_rankings(rnd.owner, rnd.dataset_id)
    assert fast == rankings.pull_rankings(rnd.owner, rnd.dataset_id, fast=False)
    route = rankings.fast_listing(rnd.owner).format(dataset_id=rnd.dataset_id)
    with pytest.raises(AuthError, match="403"):
        rnd.alice.get(route)  # annotators may not read everyone's responses here either
    with pytest.raises(NotFoundError):
        rnd.owner.get(rankings.fast_listing(rnd.owner).format(dataset_id=uuid.uuid4()))


def test_sdk_drops_rank_which_is_why_rankings_uses_rest(rnd: Round, argilla_stack) -> None:
    """The SDK (2.8) returns a ranking as a bare list of values: ties and ranks are lost. (It also
    fails outright on a discarded response without values, as in `rnd`, so this uses its own dataset.)"""
    sdk = client(Connection(argilla_stack.api_url, argilla_stack.api_key))
    ds = rg.Dataset(
        name=_uniq("sdk-drop"), workspace=rnd.workspace, settings=round_settings(1, 3), client=sdk
    )
    ds.create()
    ds.records.log([{"question": "q?", "candidate_1": "a", "candidate_2": "b", "candidate_3": "c"}])
    (raw,) = rnd.owner.get(f"/api/v1/datasets/{ds.id}/records")["items"]
    rankings.submit_response(
        rnd.owner, raw["id"], response_values([["candidate_3", "candidate_1"], "candidate_2"])
    )
    (rec,) = list(ds.records(with_responses=True))
    (resp,) = rec.responses["ranking"]
    assert resp.value == ["candidate_3", "candidate_1", "candidate_2"]  # no ranks, tie invisible
    (pulled,) = rankings.pull_rankings(rnd.owner, str(ds.id))
    assert pulled.responses[0].ranking == (("candidate_3", 1), ("candidate_1", 1), ("candidate_2", 2))


def test_webhook_events_are_still_delivered(rnd: Round, argilla_stack) -> None:
    """The embedded server skips building webhook events nobody listens to (patches/speedups.py); events
    a webhook does subscribe to must still arrive, through the rq worker, with the record's data."""
    received: queue.Queue = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sdk = client(Connection(argilla_stack.api_url, argilla_stack.api_key))
    ds = rg.Dataset(name=_uniq("hooked"), workspace=rnd.workspace, settings=round_settings(1, 2), client=sdk)
    ds.create()
    ds.records.log([{"question": "q?", "candidate_1": "a", "candidate_2": "b"}])
    (raw,) = rnd.owner.get(f"/api/v1/datasets/{ds.id}/records")["items"]
    hook = rnd.owner.post(
        "/api/v1/webhooks",
        json={
            "url": f"http://127.0.0.1:{srv.server_port}/hook",
            "events": ["record.completed", "response.created"],
        },
    )
    try:
        rankings.submit_response(rnd.bob, raw["id"], response_values(["candidate_2", "candidate_1"]))
        events: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while len(events) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                event = received.get(timeout=1)
                events[event["type"]] = event["data"]
    finally:
        rnd.owner.delete(f"/api/v1/webhooks/{hook['id']}")
        srv.shutdown()
    assert set(events) == {"record.completed", "response.created"}
    assert events["record.completed"]["id"] == raw["id"]
    assert events["response.created"]["values"]["ranking"]["value"][0] == {"value": "candidate_2", "rank": 1}


def test_annotator_pending_queue(rnd: Round) -> None:
    # alice answered ex-0..2; ex-3 is completed by bob: her queue is ex-4, ex-5.
    records, total = rankings.pending_records(rnd.alice, rnd.dataset_id)
    assert total == 2
    assert sorted(r["id"] for r in records) == sorted(rnd.ids[4:6])
    # bob's queue: no answer from him and not completed: ex-2 (only discarded), ex-4, ex-5.
    records, total = rankings.pending_records(rnd.bob, rnd.dataset_id)
    assert total == 3
    assert sorted(r["id"] for r in records) == sorted([rnd.ids[2], rnd.ids[4], rnd.ids[5]])
    # Annotators never see hidden provenance metadata.
    for rec in records:
        assert set(rec["metadata"]) == {"round", "source", "example_id", "turn"}
    ex4 = next(r for r in records if r["id"] == rnd.ids[4])
    assert [s["value"] for s in ex4["suggestions"]] == ["answer 4.1"]


def test_invalid_records_are_rejected_and_nothing_is_created(rnd: Round) -> None:
    questions = {
        q["name"]: q["id"] for q in rnd.owner.get(f"/api/v1/datasets/{rnd.dataset_id}/questions")["items"]
    }
    fields = {schema.QUESTION_FIELD: "q?", **{schema.slot_name(s): "a" for s in range(1, K + 1)}}
    good = {
        "external_id": schema.record_external_id(RUN, 1, "new-ok"),
        "fields": fields,
        "metadata": _metadata(0),
    }
    bad_meta = {
        **good,
        "external_id": "flow/r1/bad-meta/t0",
        "metadata": {**_metadata(0), "original_slot": "x"},  # undeclared: provenance cannot sneak in
    }
    bad_suggestion = {
        **good,
        "external_id": "flow/r1/bad-sugg/t0",
        "suggestions": [
            {"question_id": questions["ranking"], "value": [{"value": "candidate_9", "rank": 1}]}
        ],
    }
    missing_field = {**good, "external_id": "flow/r1/no-field/t0", "fields": {schema.QUESTION_FIELD: "q?"}}
    for bad, why in (
        (bad_meta, "original_slot"),
        (bad_suggestion, "candidate_9"),
        (missing_field, "candidate_1"),
    ):
        with pytest.raises(ArgillaError, match="422") as info:
            rankings.upsert_records(rnd.owner, rnd.dataset_id, [good, bad])
        assert why in str(info.value)
    assert len(rankings.pull_rankings(rnd.owner, rnd.dataset_id)) == N


def _search(api: Api, dataset_id: str, body: dict, me: bool = True) -> tuple[list[str], int]:
    path = f"/api/v1/{'me/' if me else ''}datasets/{dataset_id}/records/search"
    answer = api.post(path, json=body, params={"limit": 50})
    return [item["record"]["id"] for item in answer["items"]], answer["total"]


def _status(value: str) -> dict:
    return {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": [value]}


def test_response_status_filters(rnd: Round) -> None:
    ids, total = _search(rnd.alice, rnd.dataset_id, {"filters": {"and": [_status("submitted")]}})
    assert total == 2 and sorted(ids) == sorted(rnd.ids[0:2])
    ids, total = _search(rnd.alice, rnd.dataset_id, {"filters": {"and": [_status("discarded")]}})
    assert (ids, total) == ([rnd.ids[2]], 1)
    ids, total = _search(rnd.alice, rnd.dataset_id, {"filters": {"and": [_status("draft")]}})
    assert (ids, total) == ([], 0)
    record_completed = {
        "type": "terms",
        "scope": {"entity": "record", "property": "status"},
        "values": ["completed"],
    }
    ids, total = _search(rnd.bob, rnd.dataset_id, {"filters": {"and": [record_completed]}})
    assert total == 3 and sorted(ids) == sorted([rnd.ids[0], rnd.ids[1], rnd.ids[3]])


def test_metadata_filters(rnd: Round) -> None:
    source = {
        "type": "terms",
        "scope": {"entity": "metadata", "metadata_property": "source"},
        "values": ["extra"],
    }
    ids, total = _search(rnd.alice, rnd.dataset_id, {"filters": {"and": [source]}})
    assert total == 2 and sorted(ids) == sorted([rnd.ids[1], rnd.ids[4]])
    turn = {"type": "range", "scope": {"entity": "metadata", "metadata_property": "turn"}, "ge": 2, "le": 4}
    ids, total = _search(rnd.alice, rnd.dataset_id, {"filters": {"and": [turn]}})
    assert total == 3 and sorted(ids) == sorted(rnd.ids[2:5])
    ids, total = _search(rnd.alice, rnd.dataset_id, {"filters": {"and": [source, turn]}})
    assert (ids, total) == ([rnd.ids[4]], 1)
    # The owner's search (all responses) filters on the same metadata.
    example = {
        "type": "terms",
        "scope": {"entity": "metadata", "metadata_property": "example_id"},
        "values": ["ex-1", "ex-5"],
    }
    ids, total = _search(rnd.owner, rnd.dataset_id, {"filters": {"and": [example]}}, me=False)
    assert total == 2 and sorted(ids) == sorted([rnd.ids[1], rnd.ids[5]])


def test_sorting(rnd: Round) -> None:
    by_turn = {"scope": {"entity": "metadata", "metadata_property": "turn"}, "order": "desc"}
    ids, _ = _search(rnd.alice, rnd.dataset_id, {"sort": [by_turn]})
    assert ids == rnd.ids[::-1]
    by_turn_asc = {"scope": {"entity": "metadata", "metadata_property": "turn"}, "order": "asc"}
    ids, _ = _search(rnd.owner, rnd.dataset_id, {"sort": [by_turn_asc]}, me=False)
    assert ids == rnd.ids
    inserted = {"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"}
    ids, _ = _search(rnd.bob, rnd.dataset_id, {"sort": [inserted]})
    assert ids == rnd.ids


def test_progress_with_users_distribution(rnd: Round) -> None:
    progress = rnd.sdk_dataset.progress(with_users_distribution=True)
    assert (progress["total"], progress["completed"], progress["pending"]) == (N, 3, 3)
    alice, bob = rnd.alice.me()["username"], rnd.bob.me()["username"]
    users = progress["users"]
    assert users[alice]["completed"] == {"submitted": 2, "draft": 0, "discarded": 0}
    assert users[alice]["pending"] == {"submitted": 0, "draft": 0, "discarded": 1}
    assert users[bob]["completed"] == {"submitted": 1, "draft": 0, "discarded": 0}
    assert users[bob]["pending"] == {"submitted": 0, "draft": 0, "discarded": 0}


def test_metrics(rnd: Round) -> None:
    props = {
        p["name"]: p["id"]
        for p in rnd.alice.get(f"/api/v1/me/datasets/{rnd.dataset_id}/metadata-properties")["items"]
    }
    assert set(props) == {"round", "source", "example_id", "turn"}  # hidden ones are not listed
    source = rnd.alice.get(f"/api/v1/metadata-properties/{props['source']}/metrics")
    assert source["total"] == N
    assert {v["term"]: v["count"] for v in source["values"]} == {"faq": 4, "extra": 2}
    turn = rnd.alice.get(f"/api/v1/metadata-properties/{props['turn']}/metrics")
    assert (turn["min"], turn["max"]) == (0, N - 1)
    mine = rnd.alice.get(f"/api/v1/me/datasets/{rnd.dataset_id}/metrics")
    assert mine["responses"]["submitted"] == 2
    assert mine["responses"]["discarded"] == 1
    assert mine["responses"]["draft"] == 0


def test_outsider_cannot_read_the_dataset(rnd: Round) -> None:
    with pytest.raises(AuthError, match="403"):
        rnd.outsider.get(f"/api/v1/datasets/{rnd.dataset_id}")
    with pytest.raises(AuthError, match="403"):
        _search(rnd.outsider, rnd.dataset_id, {})
    with pytest.raises(AuthError):
        rankings.submit_response(rnd.outsider, rnd.ids[5], response_values(["candidate_1"]))
    names = [d["name"] for d in rnd.outsider.get("/api/v1/me/datasets")["items"]]
    assert rnd.dataset_name not in names


def test_annotator_cannot_pull_all_responses(rnd: Round) -> None:
    with pytest.raises(AuthError, match="403"):
        rankings.pull_rankings(rnd.alice, rnd.dataset_id)


def test_wrong_api_key_gets_401(rnd: Round, argilla_stack) -> None:
    with Api(Connection(argilla_stack.api_url, "not-a-key")) as bad, pytest.raises(AuthError, match="401"):
        rankings.pull_rankings(bad, rnd.dataset_id)


def test_k_outside_range_creates_nothing(rnd: Round, argilla_stack) -> None:
    name = _uniq("badk")
    for k in (1, 51):
        with pytest.raises(ConfigError, match="between 2 and 50"):
            rg.Dataset(name=name, workspace=rnd.workspace, settings=round_settings(1, k)).create()
    with pytest.raises(NotFoundError):
        rnd.owner.dataset_by_name(name, rnd.workspace)


def test_unknown_workspace_is_a_clear_error(rnd: Round) -> None:
    with pytest.raises(NotFoundError, match="workspace"):
        rnd.owner.dataset_by_name(rnd.dataset_name, _uniq("nows"))
    assert rnd.owner.dataset_by_name(rnd.dataset_name, rnd.workspace)["id"] == rnd.dataset_id


def test_ranking_value_builds_ties() -> None:
    assert rankings.ranking_value(["a", ["b", "c"], "d"]) == [
        {"value": "a", "rank": 1},
        {"value": "b", "rank": 2},
        {"value": "c", "rank": 2},
        {"value": "d", "rank": 3},
    ]
    assert rankings.parse_ranking([{"value": "b", "rank": 2}, {"value": "a", "rank": 1}, {"value": "c"}]) == (
        ("a", 1),
        ("b", 2),
        ("c", 3),
    )
