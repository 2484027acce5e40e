"""Phase `review`: conflicted records go to one more labeler or an owner, and their answer decides.

With `aggregate.on_conflict: review`, aggregate keeps the current answer of a record whose labelers
disagreed (`choice: conflict_review`). This phase, as Prodigy's review does, re-queues exactly those
records within the same round and lets the review decide them, so the round's data is settled now
rather than postponed. Without conflicts (or with another `on_conflict`) it is a no-op: no dataset.

Who sees the records. Argilla 2.8 shows every record of a dataset to every member of its workspace
and has no per-record assignment, so the records go to a separate dataset,
`<run>-round-<n>-review`, in a workspace holding only the reviewers (`review.workspace`,
default `<argilla.workspace>-review`; owners see every workspace). Reviewers are
`review.reviewers` (annotator accounts created when missing, credentials in 0600 files like the
labelers'); empty means the labelers who have not answered every conflicted record (Argilla cannot
route single records to them), else the connecting owner. The dataset asks the same question with
the same shuffled candidates as the round (the same push plan and record ids, `min_submitted: 1`) and
carries nothing else: no suggestions, no earlier responses, nothing that says which answer is the
original or what the labelers chose (tests/test_phase_review.py walks the reviewer's routes).

How a review decides (`review_decision`): an owner's response is final (their ranking alone, or
their written answer); anyone else is one more labeler whose ranking joins the round's votes (a
labeler who already ranked the record replaces their earlier ranking: a second look, not a second
vote), and the votes are aggregated again by aggregate's rules without the conflict rule, so the
Borda winner (ties keep the current answer) stands. The decision keeps `conflict` and its reason and
gets `reviewed_by` (`owner`/`labeler`; usernames stay in `review_responses.jsonl`, each response
marked `owner` true/false so publish's preference pairs can follow the same rule). A record nobody
reviewed before the wait ended (`wait.on_timeout: proceed`) stays `conflict_review`, and the next
round asks about it again.

Resumable and idempotent like push/wait/pull: the records are upserted by their ids (a re-run never
duplicates; records no longer in conflict after a redone aggregate are removed), the wait is the wait phase's (polling plus webhook, `wait` settings), and the responses
are read through the REST path that keeps ranks. The phase writes its own artifacts
(`reviewed.jsonl`, `reviewed.parquet`); aggregate's stay as they were, and `RunState.round_output`
tells publish and the next round which dataset is the round's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from loop.context import RoundContext
from loop.errors import StateError
from loop.fsutil import atomic_path, write_text
from loop.phases.aggregate import Decision, RecordCandidates, Response, decide

REVIEW_FILE = "review.json"
OWNER = "owner"
LABELER = "labeler"


@dataclass(frozen=True)
class Summary:
    conflicts: int = 0  # records whose labelers disagreed (aggregate), whatever on_conflict did
    queued: int = 0  # records sent to review (aggregate's `conflict_review`)
    reviewed: int = 0  # queued records the review decided
    changed: int = 0  # reviewed records whose answer is not the current one
    by: dict[str, int] = field(default_factory=dict)  # owner / labeler -> records decided
    dataset: str | None = None
    dataset_id: str | None = None
    workspace: str | None = None
    reviewers: list[str] = field(default_factory=list)
    reason: str | None = None  # why it stopped waiting, or `no_conflicts` / `not_review`
    rewritten: bool = False  # `reviewed.parquet` is the round's dataset (`RunState.round_output`)
    choices: dict[str, int] = field(default_factory=dict)  # the round's choices after the review
    round_changed: int | None = None  # the round's changed answers after the review


def review_decision(
    record: RecordCandidates,
    earlier: Sequence[Response],
    reviews: Sequence[Response],
    owners: Collection[str],
    base: Decision,
) -> Decision:
    """What a conflicted record gets from its review (see the module docstring); `base` when nobody
    reviewed it."""
    if not reviews:
        return base
    votes, by = review_votes(earlier, reviews, owners)
    d = decide(record, votes, min_submitted=1, conflict=None)
    return dataclasses.replace(d, conflict=True, reason=base.reason, reviewed_by=by)


def review_votes(
    earlier: Sequence[Response], reviews: Sequence[Response], owners: Collection[str]
) -> tuple[list[Response], str]:
    """(the votes that decide a reviewed record, `owner`/`labeler`): an owner's responses alone, or
    the round's votes with each labeler reviewer's ranking replacing their earlier one. Publish's
    preference pairs (`loop.preferences`) use the same votes, so they agree with the decision."""
    by_owner = [r for r in reviews if r.annotator in owners]
    if by_owner:
        return list(by_owner), OWNER
    names = {r.annotator for r in reviews}
    return [r for r in earlier if r.annotator not in names] + list(reviews), LABELER


def default_reviewers(
    labelers: Sequence[str], queued: Sequence[str], responses: Mapping[str, Sequence[Response]]
) -> list[str]:
    """The labelers who have not answered every queued record: each of them is one more labeler for
    at least one record."""
    return [
        name
        for name in labelers
        if any(name not in {r.annotator for r in responses.get(rid, ())} for rid in queued)
    ]


def run(ctx: RoundContext) -> Summary:
    from loop.phases.aggregate import read_decisions

    cfg = ctx.config
    decisions = read_decisions(ctx.paths.decisions)
    conflicts = sum(d.conflict for d in decisions)
    queued = [d for d in decisions if d.choice == "conflict_review"]
    if cfg.aggregate.on_conflict != "review" or not queued:
        reason = "not_review" if cfg.aggregate.on_conflict != "review" else "no_conflicts"
        if cfg.aggregate.on_conflict == "review":
            ctx.report(f"round {ctx.round}: no conflicts, nothing to review")
        return Summary(conflicts=conflicts, reason=reason)
    return _review(ctx, decisions, queued, conflicts)


def _review(ctx: RoundContext, decisions: list[Decision], queued: list[Decision], conflicts: int) -> Summary:
    import datasets

    from argilla_setup import schema
    from argilla_setup.connection import Api
    from loop import annotate
    from loop.data import to_rows
    from loop.phases.aggregate import apply_decisions, read_pulled
    from loop.phases.push import schema_options
    from loop.phases.wait import describe, wait_for_completion

    cfg = ctx.config
    plan = {r.external_id: r for r in annotate.read_plan(ctx.paths.dir)}
    missing = [d.record_id for d in queued if d.record_id not in plan]
    if missing:
        raise StateError(
            f"{len(missing)} conflicted records are not in {ctx.paths.push_plan} (e.g. {missing[0]}); redo the "
            f"round from push: `pickloop round redo push CONFIG --round {ctx.round}`"
        )
    review_plan = [plan[d.record_id] for d in queued]
    records, responses, _, _ = read_pulled(ctx.paths.pulled)
    conn = ctx.connection()
    workspace = cfg.review.workspace or f"{cfg.argilla.workspace}-review"
    with Api(conn) as api:
        reviewers, owners = _ensure_reviewers(ctx, api, workspace, [d.record_id for d in queued], responses)
    ctx.report(
        f"round {ctx.round}: {len(queued)} conflicted records to review by {', '.join(reviewers)} "
        f"(workspace {workspace})"
    )
    slots = cfg.generate.k + 1
    name = f"{schema.dataset_name(cfg.run.name, ctx.round)}-review"
    with Api(conn) as api:
        dropped = drop_stale_records(api, name, workspace, {r.external_id for r in review_plan})
    if dropped:
        ctx.report(f"round {ctx.round}: removed {dropped} records no longer in conflict from {name}")
    pushed = annotate.push(
        conn,
        review_plan,
        round_dir=ctx.paths.dir,
        run=cfg.run.name,
        round_n=ctx.round,
        workspace=workspace,
        slots=slots,
        options=dataclasses.replace(schema_options(ctx), min_submitted=1),
        suggest=False,
        progress=ctx.progress,
        name=name,
        result_file=REVIEW_FILE,
    )
    ctx.report(f"round {ctx.round}: review dataset {pushed.dataset_name}: {pushed.url}")
    with Api(conn) as api:
        waited = wait_for_completion(
            api,
            pushed.dataset_id,
            cfg.wait,
            tag=f"pickloop:{cfg.run.name}:round-{ctx.round}:review",
            labelers=[r for r in reviewers if r not in owners],
            min_submitted=1,
            on_progress=lambda p: ctx.report(f"round {ctx.round} review: {describe(p)}"),
            remote=bool(cfg.argilla.api_url),
        )
    pulled = annotate.pull(conn, pushed.dataset_id, review_plan)
    by_id = {r.record_id: r for r in records}
    owners = owners | _owners_among(conn, {r.annotator for v in pulled.responses.values() for r in v})
    write_text(
        ctx.paths.review_responses,
        "".join(
            json.dumps({**r, "owner": r["user"] in owners}, ensure_ascii=False) + "\n" for r in pulled.raw
        ),
    )
    reviewed: dict[str, Decision] = {}
    for d in queued:
        got = pulled.responses.get(d.record_id, [])
        reviewed[d.record_id] = review_decision(
            by_id[d.record_id], responses.get(d.record_id, ()), got, owners, d
        )
    final = [reviewed.get(d.record_id, d) if d.choice == "conflict_review" else d for d in decisions]
    write_text(
        ctx.paths.reviewed_decisions,
        "".join(json.dumps(asdict(d), ensure_ascii=False, default=str) + "\n" for d in final),
    )
    rows = apply_decisions(to_rows(ctx.examples()), final, ctx.round)
    with atomic_path(ctx.paths.reviewed) as tmp:
        datasets.Dataset.from_list(rows).to_parquet(str(tmp))
    done = [d for d in reviewed.values() if d.reviewed_by]
    by = {
        k: sum(d.reviewed_by == k for d in done)
        for k in (OWNER, LABELER)
        if any(d.reviewed_by == k for d in done)
    }
    choices: dict[str, int] = {}
    for d in final:
        choices[d.choice] = choices.get(d.choice, 0) + 1
    summary = Summary(
        conflicts=conflicts,
        queued=len(queued),
        reviewed=len(done),
        changed=sum(d.changed for d in done),
        by=by,
        dataset=pushed.dataset_name,
        dataset_id=pushed.dataset_id,
        workspace=workspace,
        reviewers=list(reviewers),
        reason=waited.reason,
        rewritten=True,
        choices=choices,
        round_changed=sum(d.changed for d in final),
    )
    ctx.report(f"round {ctx.round}: {describe_review(summary)}")
    return summary


def describe_review(s: Summary) -> str:
    """`4 conflicts · 3 reviewed (2 by a labeler, 1 by an owner) · 2 changed by review`."""
    parts = [f"{s.conflicts} conflict{'s' if s.conflicts != 1 else ''}"]
    if s.queued:
        who = ", ".join(f"{n} by {'an owner' if k == OWNER else 'a labeler'}" for k, n in s.by.items())
        parts.append(f"{s.reviewed} of {s.queued} reviewed" + (f" ({who})" if who else ""))
        parts.append(f"{s.changed} changed by review")
    return " · ".join(parts)


def _ensure_reviewers(
    ctx: RoundContext, api, workspace: str, queued: Sequence[str], responses: Mapping[str, Sequence[Response]]
) -> tuple[list[str], set[str]]:
    """The review workspace with exactly-added reviewers (annotators created when missing); returns
    (reviewers, the owners among them)."""
    import sys

    from argilla_setup import users

    a, rv = ctx.config.argilla, ctx.config.review
    existing = {u.name: u for u in users.list_users(api)}
    names = list(rv.reviewers) or default_reviewers(a.labelers, queued, responses)
    if not names:
        names = [api.me()["username"]]
    ws = api.workspace_by_name(workspace) or api.post("/api/v1/workspaces", json={"name": workspace})
    new = [n for n in names if n not in existing]
    if new:
        for user in users.add_users(api, new, workspace=workspace, home=a.home):
            ctx.report(users.describe_new_user(user, interactive=sys.stdout.isatty()))
    owners = {n for n in names if n in existing and existing[n].role == OWNER}
    ids = None
    for name in names:
        if name in existing and name not in owners and workspace not in existing[name].workspaces:
            ids = ids or {u["username"]: u["id"] for u in api.get("/api/v1/users")["items"]}
            api.post(f"/api/v1/workspaces/{ws['id']}/users", json={"user_id": ids[name]})
    return names, owners


DELETE_MAX = 100  # argilla-server 2.8's limit of record ids per DELETE /datasets/{id}/records


def drop_stale_records(api, name: str, workspace: str, keep: Collection[str]) -> int:
    """Delete the review dataset's records that are not in conflict any more (aggregate was redone
    with other settings since the last push), so the dataset holds exactly the conflicted records."""
    from loop.errors import NotFoundError

    try:
        ds = api.dataset_by_name(name, workspace)
    except NotFoundError:
        return 0
    stale, offset = [], 0
    while True:
        page = api.get(f"/api/v1/datasets/{ds['id']}/records", params={"offset": offset, "limit": 1000})
        stale += [r["id"] for r in page["items"] if r.get("external_id") not in keep]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    for start in range(0, len(stale), DELETE_MAX):
        api.delete(
            f"/api/v1/datasets/{ds['id']}/records",
            params={"ids": ",".join(stale[start : start + DELETE_MAX])},
        )
    return len(stale)


def _owners_among(conn, names: Collection[str]) -> set[str]:
    """Which of these responders are owners (an owner may review any dataset, listed or not)."""
    from argilla_setup import users
    from argilla_setup.connection import Api

    if not names:
        return set()
    with Api(conn) as api:
        return {u.name for u in users.list_users(api) if u.name in names and u.role == OWNER}
