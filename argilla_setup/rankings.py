"""Rankings in and out of a round dataset, through the REST API.

The SDK drops `rank` when it reads a ranking response (and, in 2.8, fails on a discarded response
without values), so the owner reads responses here, sorted by rank with ties kept, into small frozen
dataclasses. On the embedded server the read uses pickloop's fast route
(`argilla_setup/patches/rankings_route.py`, 5000 records a page, no ORM); anywhere else argilla's own
`GET /api/v1/datasets/{id}/records?include=responses` (1000 a page, database only, no search-engine
round trip). Both answer the same items; one HTTP connection is reused throughout.

`upsert_records` pushes records in the server's largest batches. The labeler side (`submit_response`,
`update_response`, `submit_responses`, `pending_records`) sends exactly what the Argilla UI sends to
the same `/me/...`, `/records/{id}/responses` and `/responses/{id}` endpoints; the demo's simulated
labelers and the tests use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from argilla_setup.connection import Api
from argilla_setup.schema import (
    BETTER_ANSWER_QUESTION,
    NONE_ACCEPTABLE_NO,
    NONE_ACCEPTABLE_QUESTION,
    NONE_ACCEPTABLE_YES,
    RANKING_QUESTION,
)
from loop.errors import ArgillaError, NotFoundError

PAGE_SIZE = 1000  # the server's maximum page for record listing and search
FAST_PAGE_SIZE = 5000  # page of the embedded server's fast route (argilla_setup/patches/rankings_route.py)
UPSERT_MAX = 500  # the server's maximum items for PUT /datasets/{id}/records/bulk
RESPONSES_BULK_MAX = 100  # the server's maximum items for /me/responses/bulk
STATUSES = ("submitted", "draft", "discarded")
FAST_INFO_PATH = "/api/v1/x-pickloop/info"  # answered only by the embedded server's fast route


@dataclass(frozen=True)
class RankedResponse:
    """One annotator's answer to one record."""

    user_id: str
    username: str | None
    status: str
    """`submitted`, `draft` or `discarded`."""
    ranking: tuple[tuple[str, int], ...]
    """(slot, rank) sorted by rank (1 is best); equal ranks are ties; empty when not ranked."""
    better_answer: str | None
    none_acceptable: bool | None
    """True/False when the labeler answered the "none acceptable" question, else None."""

    def best(self) -> tuple[str, ...]:
        """The slot(s) ranked first (several when tied)."""
        if not self.ranking:
            return ()
        top = self.ranking[0][1]
        return tuple(v for v, r in self.ranking if r == top)


@dataclass(frozen=True)
class RecordRankings:
    """A record with every annotator's response."""

    id: str
    external_id: str | None
    status: str
    """`pending` or `completed` (enough submitted responses for the task distribution)."""
    fields: dict[str, Any]
    metadata: dict[str, Any]
    responses: tuple[RankedResponse, ...]

    def submitted(self) -> tuple[RankedResponse, ...]:
        return tuple(r for r in self.responses if r.status == "submitted")


def parse_ranking(value: Any) -> tuple[tuple[str, int], ...]:
    """`[{"value": v, "rank": n}, ...]` as (value, rank) pairs sorted by rank, ties kept in the
    stored order. Items without a rank (never sent by the UI) go last, in stored order."""
    if not value:
        return ()
    items = [(item["value"], item.get("rank")) for item in value]
    ranked = sorted((p for p in items if p[1] is not None), key=lambda p: p[1])
    unranked = [(v, len(items)) for v, r in items if r is None]
    return tuple((str(v), int(r)) for v, r in ranked + unranked)


def _parse_response(raw: dict[str, Any], usernames: dict[str, str]) -> RankedResponse:
    values = raw.get("values") or {}

    def value(name: str) -> Any:
        entry = values.get(name)
        return entry.get("value") if isinstance(entry, dict) else None

    none_value = value(NONE_ACCEPTABLE_QUESTION)
    better = value(BETTER_ANSWER_QUESTION)
    return RankedResponse(
        user_id=raw["user_id"],
        username=usernames.get(raw["user_id"]),
        status=raw["status"],
        ranking=parse_ranking(value(RANKING_QUESTION)),
        better_answer=better if isinstance(better, str) and better.strip() else None,
        none_acceptable=None if none_value is None else none_value == NONE_ACCEPTABLE_YES,
    )


def _parse_record(raw: dict[str, Any], usernames: dict[str, str]) -> RecordRankings:
    return RecordRankings(
        id=raw["id"],
        external_id=raw.get("external_id"),
        status=raw["status"],
        fields=raw.get("fields") or {},
        metadata=raw.get("metadata") or {},
        responses=tuple(_parse_response(r, usernames) for r in raw.get("responses") or ()),
    )


def usernames(api: Api) -> dict[str, str]:
    """user id → username (owners and admins may list users; others get an empty map)."""
    try:
        return {u["id"]: u["username"] for u in api.get("/api/v1/users")["items"]}
    except PermissionError:
        return {}


def fast_listing(api: Api) -> str | None:
    """The embedded server's fast rankings route (`argilla_setup.patches.rankings_route`), if it has one."""
    if "rankings_route" not in api.cache:
        try:
            api.cache["rankings_route"] = api.get(FAST_INFO_PATH)["rankings"]
        except NotFoundError:
            api.cache["rankings_route"] = None
    return api.cache["rankings_route"]


def iter_rankings(
    api: Api, dataset_id: str, *, page_size: int | None = None, fast: bool = True
) -> Iterator[RecordRankings]:
    """Every record of the dataset with all responses, in insertion order, one page at a time.

    Uses the embedded server's fast route when it exists (and `fast`), else argilla's own listing;
    both answer the same items. Needs a user allowed to see all responses (owner, or workspace admin).
    """
    names = usernames(api)
    for raw in iter_records(api, dataset_id, page_size=page_size, fast=fast):
        yield _parse_record(raw, names)


def iter_records(
    api: Api, dataset_id: str, *, page_size: int | None = None, fast: bool = True
) -> Iterator[dict[str, Any]]:
    """Every record of the dataset as the server answers it (fields, metadata, every response with
    its `values`), in insertion order; for datasets whose questions are not a ranking."""
    route = fast_listing(api) if fast else None
    if route is not None:
        path, size = route.format(dataset_id=dataset_id), min(page_size or FAST_PAGE_SIZE, FAST_PAGE_SIZE)
        params: dict[str, Any] = {}
    else:
        path, size = f"/api/v1/datasets/{dataset_id}/records", min(page_size or PAGE_SIZE, PAGE_SIZE)
        params = {"include": "responses"}
    offset = 0
    while True:
        page = api.get(path, params={**params, "offset": offset, "limit": size})
        items = page["items"]
        yield from items
        offset += len(items)
        if not items or offset >= page["total"]:
            return


def pull_rankings(
    api: Api, dataset_id: str, *, page_size: int | None = None, fast: bool = True
) -> list[RecordRankings]:
    """All records with their ranked responses (see `iter_rankings`)."""
    return list(iter_rankings(api, dataset_id, page_size=page_size, fast=fast))


def upsert_records(
    api: Api, dataset_id: str, records: Sequence[dict[str, Any]], *, batch: int = UPSERT_MAX
) -> int:
    """Create or update records in batches of up to 500 (`PUT /datasets/{id}/records/bulk`).

    Each record is the REST shape: `{"external_id", "fields", "metadata", "suggestions"?}`; a record
    whose `external_id` exists is updated, so re-pushing a round never duplicates. Returns the count.
    """
    if not 1 <= batch <= UPSERT_MAX:
        raise ValueError(f"batch must be 1..{UPSERT_MAX}, got {batch}")
    for start in range(0, len(records), batch):
        # The answer echoes every record back; leaving it unparsed saves client CPU.
        items = list(records[start : start + batch])
        api.request("PUT", f"/api/v1/datasets/{dataset_id}/records/bulk", json={"items": items})
    return len(records)


# Labeler side: what the Argilla UI sends.


def ranking_value(order: Sequence[str | Sequence[str]]) -> list[dict[str, Any]]:
    """A ranking response value from best to worst; a nested sequence is a tie.

    `ranking_value(["candidate_2", ["candidate_1", "candidate_3"]])` ranks candidate_2 first and the
    other two tied second.
    """
    value = []
    for rank, group in enumerate(order, 1):
        for slot in [group] if isinstance(group, str) else group:
            value.append({"value": slot, "rank": rank})
    return value


def response_values(
    order: Sequence[str | Sequence[str]],
    *,
    better_answer: str | None = None,
    none_acceptable: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """The `values` body of a response for the round schema."""
    values: dict[str, dict[str, Any]] = {RANKING_QUESTION: {"value": ranking_value(order)}}
    if better_answer is not None:
        values[BETTER_ANSWER_QUESTION] = {"value": better_answer}
    if none_acceptable is not None:
        values[NONE_ACCEPTABLE_QUESTION] = {
            "value": NONE_ACCEPTABLE_YES if none_acceptable else NONE_ACCEPTABLE_NO
        }
    return values


def submit_response(
    api: Api, record_id: str, values: dict[str, Any] | None, status: str = "submitted"
) -> dict[str, Any]:
    """Create the current user's response to a record (`POST /records/{id}/responses`, as the UI).

    Like the UI, always sends a `values` object (`{}` for a bare discard): argilla-server 2.8 commits a
    response without values and then fails indexing it (HTTP 500).
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    body = {"status": status, "values": values or {}}
    return api.post(f"/api/v1/records/{record_id}/responses", json=body)


def update_response(
    api: Api, response_id: str, values: dict[str, Any] | None, status: str = "submitted"
) -> dict[str, Any]:
    """Change the current user's existing response (`PUT /responses/{id}`, as the UI)."""
    return api.put(f"/api/v1/responses/{response_id}", json={"status": status, "values": values or {}})


def submit_responses(api: Api, items: Sequence[tuple[str, dict[str, Any] | None, str]]) -> int:
    """Upsert many of the current user's responses via `/me/responses/bulk` (100 a request).

    `items` are (record id, values, status). Raises ArgillaError listing the first failures.
    """
    done = 0
    for start in range(0, len(items), RESPONSES_BULK_MAX):
        chunk = items[start : start + RESPONSES_BULK_MAX]
        body = {
            "items": [{"record_id": rid, "status": status, "values": v or {}} for rid, v, status in chunk]
        }
        answer = api.post("/api/v1/me/responses/bulk", json=body)
        errors = [
            (chunk[i][0], it["error"]["detail"]) for i, it in enumerate(answer["items"]) if it.get("error")
        ]
        if errors:
            shown = "; ".join(f"record {rid}: {detail}" for rid, detail in errors[:3])
            raise ArgillaError(f"{len(errors)} of {len(chunk)} responses were rejected: {shown}")
        done += len(chunk)
    return done


def pending_records(
    api: Api, dataset_id: str, *, limit: int = 50, offset: int = 0, sort: list[dict] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The current user's queue exactly as the UI asks for it: `/me/datasets/{id}/records/search`
    filtered on this user's response status `pending` and record status `pending` (not yet completed
    by enough annotators), with responses and suggestions included. Returns (records, total)."""
    body: dict[str, Any] = {
        "query": {},
        "filters": {
            "and": [
                {
                    "type": "terms",
                    "scope": {"entity": "response", "property": "status"},
                    "values": ["pending"],
                },
                {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
            ]
        },
    }
    if sort:
        body["sort"] = sort
    params = [("include", "responses"), ("include", "suggestions"), ("offset", offset), ("limit", limit)]
    answer = api.post(f"/api/v1/me/datasets/{dataset_id}/records/search", json=body, params=params)
    return [item["record"] for item in answer["items"]], answer["total"]
