"""A fast read-only listing for the embedded server: records with all their responses.

`GET /api/v1/x-pickloop/datasets/{id}/rankings?offset=&limit=` answers the same items as argilla's
`GET /api/v1/datasets/{id}/records?include=responses` (id, external_id, status, fields, metadata,
responses with user_id/status/values), to the same users (owner, or admin of the workspace), but from
two column queries instead of ORM objects, with the JSON columns passed through as stored (never
parsed and re-encoded). Argilla's listing spends most of its time building ORM objects and mutable-JSON
wrappers; this one is several times faster. Order is (inserted_at, id), so offset paging is stable.

Mounted by `argilla_setup.patches.apply()` in the server process (a speedup: guarded against the
upstream listing and policy it copies, off with `PICKLOOP_NO_SPEEDUPS=1`); `argilla_setup.rankings`
uses it when `GET /api/v1/x-pickloop/info` answers, and falls back to argilla's listing otherwise
(any other deployment). No `from __future__ import annotations` here: FastAPI reads these annotations.
"""

import json
from typing import Annotated, Any
from uuid import UUID

from argilla_server.api.policies.v1 import DatasetPolicy, authorize
from argilla_server.database import get_async_db
from argilla_server.models import Dataset, Record, Response, User
from argilla_server.security import auth
from fastapi import APIRouter, Depends, Query, Security
from fastapi import Response as HttpResponse
from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from argilla_setup.patches import Patch, hit

INFO_PATH = "/x-pickloop/info"
RANKINGS_PATH = "/x-pickloop/datasets/{dataset_id}/rankings"
MAX_PAGE = 10_000

router = APIRouter()


@router.get(INFO_PATH, include_in_schema=False)
async def pickloop_info() -> dict:
    """Lets a client discover this route (a 404 means a plain argilla deployment)."""
    return {"rankings": "/api/v1" + RANKINGS_PATH, "max_page": MAX_PAGE}


@router.get(RANKINGS_PATH, include_in_schema=False)
async def list_rankings(
    *,
    db: Annotated[AsyncSession, Depends(get_async_db)],
    current_user: Annotated[User, Security(auth.get_current_user)],
    dataset_id: UUID,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> HttpResponse:
    dataset = await Dataset.get_or_raise(db, dataset_id)
    await authorize(current_user, DatasetPolicy.list_records_with_all_responses(dataset))
    hit("rankings_route")
    rows = (
        await db.execute(
            select(
                Record.id,
                Record.external_id,
                Record.status,
                type_coerce(Record.fields, String),
                type_coerce(Record.metadata_, String),
            )
            .where(Record.dataset_id == dataset_id)
            .order_by(Record.inserted_at, Record.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    total = await db.scalar(select(func.count(Record.id)).where(Record.dataset_id == dataset_id))
    answers: dict[Any, list[str]] = {}
    if rows:
        result = await db.execute(
            select(
                Response.record_id, Response.user_id, Response.status, type_coerce(Response.values, String)
            )
            .where(Response.record_id.in_([row[0] for row in rows]))
            .order_by(Response.inserted_at)
        )
        for record_id, user_id, status, values in result:
            answers.setdefault(record_id, []).append(
                f'{{"user_id":"{user_id}","status":"{_enum(status)}","values":{values or "null"}}}'
            )
    items = [
        f'{{"id":"{record_id}","external_id":{json.dumps(external_id)},"status":"{_enum(status)}",'
        f'"fields":{fields or "{}"},"metadata":{metadata or "null"},'
        f'"responses":[{",".join(answers.get(record_id, ()))}]}}'
        for record_id, external_id, status, fields, metadata in rows
    ]
    body = f'{{"items":[{",".join(items)}],"total":{int(total or 0)}}}'
    return HttpResponse(content=body, media_type="application/json")


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def mount() -> None:
    """Mount the routes on argilla's `/api/v1` app (the server process only)."""
    from argilla_server.api.routes import api_v1

    api_v1.include_router(router)


_HANDLERS = "argilla_server.api.handlers.v1.datasets.records"
PATCH = Patch(
    "rankings_route",
    mount,
    {
        # Answers what this listing answers, to the users this policy allows.
        f"{_HANDLERS}:list_dataset_records": "ef263588e05bc4982bd643814a9b249ca76ccc50690bd442f336f254409a782b",
        "argilla_server.api.policies.v1.dataset_policy:DatasetPolicy.list_records_with_all_responses": "27cc4d694ea4a0bd28a51ba0dd2e39e7fcbc67d9110f03cfe30b3c0fc0a3e3d4",
    },
    server_only=True,
)
