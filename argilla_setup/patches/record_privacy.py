"""Security fixes for the embedded argilla-server 2.8: what annotators and anonymous callers may read.

These are not speedups: `PICKLOOP_NO_SPEEDUPS=1` leaves them on, and if their guard refuses them
(argilla-server upgraded, an upstream function changed) the server does not start (fail closed).

- `record_privacy`: argilla's `GET /api/v1/records/{id}` answers every member of the workspace with
  the record's whole metadata (properties declared `visible_for_annotators=False` and undeclared
  extra keys too) and every annotator's responses. For an annotator the answer is now what argilla's
  own `/me/datasets/{id}/records/search` gives them: metadata of the properties whose
  `allowed_roles` include theirs, and only their own response. Owners and admins are unchanged.
  (pickloop no longer puts provenance in Argilla at all; this closes the route for any other hidden
  metadata and for other labelers' rankings.)
- `status_paths`: the unauthenticated `GET /api/v1/status` reports the search engine's `info()`,
  whose `path` is the search database under the server home. The path is dropped; the rest stays.

Both wrap the route's endpoint (FastAPI calls `route.dependant.call` on every request), so argilla's
own handler, authorisation and response model still run.
"""

from __future__ import annotations

from typing import Any

from argilla_setup.patches import Patch, hit

_RECORDS = "argilla_server.api.handlers.v1.records"
_INFO = "argilla_server.api.handlers.v1.info"
STATUS_HIDDEN_KEYS = ("path",)


def _route_for(endpoint: Any) -> Any:
    from argilla_server.api.routes import api_v1
    from fastapi.routing import APIRoute

    for route in api_v1.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise RuntimeError(f"argilla-server changed: no route serves {endpoint.__qualname__}")


async def annotator_view(db: Any, record: Any, user: Any) -> Any:
    """`record` (ORM) as an annotator may see it: visible metadata, own responses (a schema copy; the
    ORM object, which the session could flush, is never modified)."""
    from argilla_server.api.schemas.v1.records import Record as RecordSchema
    from argilla_server.models import MetadataProperty
    from sqlalchemy import select

    view = RecordSchema.model_validate(record)
    metadata = view.metadata
    if metadata:
        props = await db.execute(
            select(MetadataProperty.name, MetadataProperty.allowed_roles).where(
                MetadataProperty.dataset_id == record.dataset_id
            )
        )
        # As argilla's RecordPolicy.get_metadata for a non-admin: a declared property whose roles
        # include the user's; undeclared keys are for owners and admins only.
        visible = {name for name, roles in props if user.role in (roles or [])}
        metadata = {k: v for k, v in metadata.items() if k in visible}
    responses = view.responses
    if responses is not None:
        responses = [r for r in responses if r.user_id == user.id]
    return view.model_copy(update={"metadata": metadata, "responses": responses})


def record_privacy() -> None:
    import importlib

    handlers = importlib.import_module(_RECORDS)
    route = _route_for(handlers.get_record)
    upstream = route.dependant.call

    async def get_record(**values: Any) -> Any:
        record = await upstream(**values)
        user = values["current_user"]
        if user.is_owner or user.is_admin:
            return record
        hit("record_privacy")
        return await annotator_view(values["db"], record, user)

    get_record.__wrapped__ = upstream  # type: ignore[attr-defined]
    route.dependant.call = get_record


def status_paths() -> None:
    import importlib

    info = importlib.import_module(_INFO)
    route = _route_for(info.get_status)
    upstream = route.dependant.call

    async def get_status(**values: Any) -> Any:
        status = await upstream(**values)
        hit("status_paths")
        engine = {k: v for k, v in status.search_engine.items() if k not in STATUS_HIDDEN_KEYS}
        return status.model_copy(update={"search_engine": engine})

    get_status.__wrapped__ = upstream  # type: ignore[attr-defined]
    route.dependant.call = get_status


PATCHES = [
    Patch(
        "record_privacy",
        record_privacy,
        {
            f"{_RECORDS}:get_record": "a1d2333cd2c8849a937482aab3376cca29f03d63f5dff35a227f187cda7f874e",
            # the rule annotator_view reproduces, and argilla's annotator view it matches
            "argilla_server.api.policies.v1.record_policy:RecordPolicy.get_metadata": "a753deaf3d04698d0812eb7f8d13b3ea8f9282f2f718833484b93b304bea073f",
            "argilla_server.api.handlers.v1.datasets.records:_filter_record_metadata_for_user": "37051579176bfa0f3edbac33c34e7421c47813eaa8360fbf23d4bc8b28aae317",
        },
        required=True,
        server_only=True,
    ),
    Patch(
        "status_paths",
        status_paths,
        {f"{_INFO}:get_status": "8a5257694e4443ae70463302edc7d0f7945c10570690e80b2fef5deeb2c71893"},
        required=True,
        server_only=True,
    ),
]
