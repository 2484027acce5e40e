"""Push a round's candidates to Argilla and pull the labelers' rankings back.

Push builds a *plan* first: for every (example, assistant turn) one record whose slots hold the
dataset's current answer and the model's distinct candidates, shuffled with a seed so labelers rank
blind. The plan is written to the round directory before anything reaches Argilla, and records are
upserted by their deterministic external id (run, round, example, turn): re-running a push after a
crash re-sends the same records and never duplicates one. Provenance (which slot is the original,
which model and temperature made each candidate) stays in the plan only: nothing sent to Argilla
(fields, metadata, external id, suggestions) tells one option's source from another's, so no route
or role of any Argilla deployment can unblind a labeler. Pull reads submitted rankings with their
ranks through the REST API (the SDK drops them) and maps slots back to sources through the plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argilla_setup import schema
from argilla_setup.connection import Api, Connection, client
from loop.errors import ArgillaError, NotFoundError, StateError
from loop.fsutil import atomic_path, write_json

log = logging.getLogger("pickloop.annotate")

PLAN_FILE = "push_plan.jsonl"
PUSH_FILE = "push.json"
ORIGINAL = "original"


@dataclass(frozen=True)
class Candidate:
    """One answer on offer: the dataset's own (`model == "original"`) or a generated one."""

    text: str
    model: str = ORIGINAL
    temperature: float = -1.0  # -1: the original answer, 0: greedy
    settings: dict[str, Any] = field(default_factory=dict)
    mean_logprob: float | None = None


@dataclass(frozen=True)
class RoundItem:
    """An assistant turn to be decided by labelers."""

    example_id: str
    turn: int
    context: tuple[dict[str, str], ...]  # the messages before this assistant turn
    current_answer: str
    candidates: tuple[Candidate, ...]  # generated ones; the original is added by the plan
    source: str = "dataset"
    message_index: int = -1  # index of this assistant turn in the conversation's messages
    scores: dict[str, float] = field(default_factory=dict)  # value scores, hidden from annotators


@dataclass(frozen=True)
class PlannedRecord:
    external_id: str
    example_id: str
    turn: int
    context: tuple[dict[str, str], ...]
    slots: dict[str, Candidate]  # slot name -> candidate; absent slots are empty
    original_slot: str | None
    source: str = "dataset"
    message_index: int = -1
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        """One plan line; the same text as `json.dumps(asdict(self))`, without `asdict`'s deep copy
        (most of a 100k-record push's own time)."""
        body = {**vars(self), "slots": {k: vars(c) for k, c in self.slots.items()}}
        return json.dumps(body, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> PlannedRecord:
        raw = json.loads(line)
        raw["context"] = tuple(raw["context"])
        raw["slots"] = {k: Candidate(**v) for k, v in raw["slots"].items()}
        return cls(**raw)


@dataclass(frozen=True)
class PushResult:
    dataset_id: str
    dataset_name: str
    workspace: str
    records: int
    url: str
    created_dataset: bool


def item_from_turn(
    turn: Any, model_name: str, source: str = "dataset", scores: dict[str, float] | None = None
) -> RoundItem:
    """A generated turn (`loop.phases.generate.TurnCandidates`) as a round item; settings kept per candidate."""
    cands = []
    for c in turn.candidates:
        specs = [asdict(s) if not isinstance(s, dict) else s for s in c.settings]
        first = specs[0] if specs else {}
        temperature = 0.0 if first.get("kind") == "greedy" else float(first.get("temperature") or 0.0)
        cands.append(
            Candidate(c.text, model_name, temperature, {"samples": specs, "count": c.count}, c.mean_logprob)
        )
    return RoundItem(
        turn.example_id,
        turn.turn,
        tuple(turn.context),
        turn.current_answer,
        tuple(cands),
        source,
        turn.message_index,
        dict(scores or {}),
    )


def _norm(text: str) -> str:
    return " ".join(text.split())


SHUFFLE_KEY_FILE = "shuffle.key"


def shuffle_key(home: Path | None = None) -> str:
    """A secret mixed into every shuffle, created once (0600) under `PICKLOOP_HOME`.

    The record's external id (run, round, example, turn) is visible to labelers and the run seed is
    usually the config default, so a shuffle seeded by those alone can be recomputed by anyone who
    has the code: the secret is what keeps the slot of the original unguessable. Re-planning on the
    same home gives the same slots (a re-push upserts the same records); a run moved to another
    home must take this file along, or a re-push would reshuffle records already answered.
    """
    import secrets

    from loop import paths
    from loop.fsutil import write_secret

    path = (home or paths.home()) / SHUFFLE_KEY_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path, secrets.token_hex(32) + "\n")
        return path.read_text(encoding="utf-8").strip()


def plan_records(
    items: Iterable[RoundItem],
    *,
    run: str,
    round_n: int,
    slots: int,
    seed: int,
    key: str | None = None,
) -> list[PlannedRecord]:
    """Deterministic slot assignment: original first, distinct candidates next, then a shuffle seeded
    by `seed`, the record id and the secret `key` (default: `shuffle_key()`).

    Candidates whose text equals the original (whitespace aside) are merged into the original's slot;
    when there are more distinct texts than slots, the later candidates are dropped.
    """
    planned = []
    names = schema.slot_names(slots)
    key = shuffle_key() if key is None else key
    for item in items:
        ext = schema.record_external_id(run, round_n, item.example_id, item.turn)
        offered: list[Candidate] = [Candidate(item.current_answer)]
        seen = {_norm(item.current_answer)}
        for cand in item.candidates:
            text = _norm(cand.text)
            if text and text not in seen:
                seen.add(text)
                offered.append(cand)
        offered = offered[:slots]
        order = list(range(len(offered)))
        random.Random(f"{key}:{seed}:{ext}").shuffle(order)
        assigned = {names[pos]: offered[i] for pos, i in enumerate(order)}
        original = next(s for s, c in assigned.items() if c.model == ORIGINAL)
        planned.append(
            PlannedRecord(
                ext,
                item.example_id,
                item.turn,
                tuple(item.context),
                assigned,
                original,
                item.source,
                item.message_index,
                item.scores,
            )
        )
    return planned


def plan_hash(plan: Sequence[PlannedRecord]) -> str:
    digest = hashlib.sha256()
    for rec in plan:
        digest.update(rec.to_json().encode())
    return digest.hexdigest()[:16]


def write_plan(round_dir: Path, plan: Sequence[PlannedRecord]) -> Path:
    target = round_dir / PLAN_FILE
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for rec in plan:
            fh.write(rec.to_json() + "\n")
    return target


def read_plan(round_dir: Path) -> list[PlannedRecord]:
    path = round_dir / PLAN_FILE
    if not path.exists():
        raise StateError(f"{path} is missing: run the push phase first")
    return [PlannedRecord.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def record_body(
    rec: PlannedRecord, *, round_n: int, multi_turn: bool, slots: int, suggest: bool, key: str | None = None
) -> dict:
    """The REST upsert item for a planned record: fields, metadata, and (if `suggest`) suggestions.

    The metadata describes the record (round, source dataset, example, turn), never an option: which
    slot holds the original and which model made each candidate stay in the plan.
    """
    fields: dict[str, Any] = {}
    if multi_turn:
        fields[schema.CONVERSATION_FIELD] = [
            {"role": m["role"], "content": m["content"]} for m in rec.context
        ]
    else:
        fields[schema.QUESTION_FIELD] = next(
            m["content"] for m in reversed(rec.context) if m["role"] == "user"
        )
    metadata: dict[str, Any] = {
        schema.META_ROUND: round_n,
        schema.META_SOURCE: rec.source,
        schema.META_EXAMPLE_ID: rec.example_id,
        schema.META_TURN: rec.turn,
    }
    metadata.update({k: v for k, v in rec.scores.items() if k in schema.SCORE_METADATA and math.isfinite(v)})
    for name in schema.slot_names(slots):
        cand = rec.slots.get(name)
        if cand is not None:
            fields[name] = cand.text
    body: dict[str, Any] = {"external_id": rec.external_id, "fields": fields, "metadata": metadata}
    if suggest:
        body["suggestions"] = _model_suggestions(rec, shuffle_key() if key is None else key)
    return body


def _model_suggestions(rec: PlannedRecord, key: str) -> list[dict]:
    """The model's own preference: generated candidates by mean log-probability.

    Annotators see suggestions, so this must not reveal the original: it has no log-probability, and
    placing it first or last would point at its slot. It goes at a rank drawn from the secret
    `shuffle_key()` and the record id (uniform, fixed across re-pushes), so the suggestion shows only
    the model's order among its own candidates. Off by default (`suggest_model_choice`): even so it
    tells labelers which slots the model prefers, and anchors them.
    """
    generated = sorted(
        (kv for kv in rec.slots.items() if kv[1].model != ORIGINAL),
        key=lambda kv: -(kv[1].mean_logprob if kv[1].mean_logprob is not None else -1e9),
    )
    order = [slot for slot, _ in generated]
    if rec.original_slot is not None:
        rng = random.Random(f"{key}:suggestion:{rec.external_id}")
        order.insert(rng.randrange(len(order) + 1), rec.original_slot)
    ranking = [{"value": slot, "rank": i} for i, slot in enumerate(order, 1)]
    return [
        {
            "question_name": schema.RANKING_QUESTION,
            "value": ranking,
            "agent": "pickloop-model",
            "type": "model",
        }
    ]


def ensure_dataset(
    conn: Connection, api: Api, *, name: str, workspace: str, settings_factory
) -> tuple[dict, bool]:
    """The round's dataset, created (and published) when missing.

    A dataset left in `draft` by a push killed during creation is deleted and created again: a draft
    cannot hold records, so nothing is lost.
    """
    ws = api.workspace_by_name(workspace)
    if ws is None:
        api.post("/api/v1/workspaces", json={"name": workspace})
    try:
        found = api.dataset_by_name(name, workspace)
        if found.get("status") == "ready":
            return found, False
        log.warning("dataset %s was left in draft by an interrupted push; recreating it", name)
        api.delete(f"/api/v1/datasets/{found['id']}")
    except NotFoundError:
        pass
    import argilla as rg

    rg_client = client(conn)
    ds = rg.Dataset(name=name, workspace=workspace, settings=settings_factory(rg_client), client=rg_client)
    ds.create()
    return api.dataset_by_name(name, workspace), True


def upsert_records(api: Api, dataset_id: str, bodies: Sequence[dict], *, progress: bool = True) -> int:
    """Upsert by external id in the server's largest batches, with a progress bar."""
    from tqdm.auto import tqdm

    from argilla_setup.rankings import UPSERT_MAX
    from argilla_setup.rankings import upsert_records as put

    with tqdm(total=len(bodies), desc="push", unit="rec", disable=not progress) as bar:
        for start in range(0, len(bodies), UPSERT_MAX):
            bar.update(put(api, dataset_id, bodies[start : start + UPSERT_MAX]))
    return len(bodies)


def count_records(api: Api, dataset_id: str) -> int:
    return int(api.get(f"/api/v1/datasets/{dataset_id}/records", params={"limit": 1})["total"])


def push(
    conn: Connection,
    plan: Sequence[PlannedRecord],
    *,
    round_dir: Path,
    run: str,
    round_n: int,
    workspace: str,
    slots: int,
    options: schema.SchemaOptions,
    suggest: bool = False,
    progress: bool = True,
    name: str | None = None,
    result_file: str = PUSH_FILE,
) -> PushResult:
    """Create the round's dataset if needed and upsert every planned record; verifies the count.

    `name` (default `schema.dataset_name`) and `result_file` let the `review` phase push a subset of
    the plan to its own dataset with the same records."""
    name = name or schema.dataset_name(run, round_n)
    with Api(conn) as api:
        ds, created = ensure_dataset(
            conn,
            api,
            name=name,
            workspace=workspace,
            settings_factory=lambda c: schema.round_settings(round_n, slots, options, client=c),
        )
        key = shuffle_key() if suggest else None  # read once, not once a record
        bodies = [
            record_body(
                r, round_n=round_n, multi_turn=options.multi_turn, slots=slots, suggest=suggest, key=key
            )
            for r in plan
        ]
        if suggest:
            # The REST upsert names a suggestion's question by id (`question_name` is the SDK's).
            questions = api.get(f"/api/v1/datasets/{ds['id']}/questions")["items"]
            qids = {q["name"]: q["id"] for q in questions}
            for body in bodies:
                for sugg in body.get("suggestions", ()):
                    sugg["question_id"] = qids[sugg.pop("question_name")]
        upsert_records(api, ds["id"], bodies, progress=progress)
        total = count_records(api, ds["id"])
    if total != len(plan):
        raise ArgillaError(
            f"dataset {name} holds {total} records after the push, the plan has {len(plan)}: "
            "records were added by hand or ids changed; inspect it in the UI"
        )
    result = PushResult(
        ds["id"], name, workspace, total, f"{conn.api_url}/dataset/{ds['id']}/annotation-mode", created
    )
    write_json(round_dir / result_file, asdict(result))
    return result


def read_push(round_dir: Path, result_file: str = PUSH_FILE) -> PushResult:
    path = round_dir / result_file
    if not path.exists():
        raise StateError(f"{path} is missing: run the push phase first")
    return PushResult(**json.loads(path.read_text()))


@dataclass(frozen=True)
class Pulled:
    """What labelers said about a round, ready for `loop.phases.aggregate.aggregate_round`."""

    records: list  # loop.phases.aggregate.RecordCandidates, in plan order
    responses: dict[str, list]  # external id -> loop.phases.aggregate.Response (submitted only)
    discarded: int
    draft: int
    missing: int  # planned records not found in Argilla (should be 0)
    raw: list[dict]  # every response as pulled, for the audit file


def pull(conn: Connection, dataset_id: str, plan: Sequence[PlannedRecord]) -> Pulled:
    """Read every response with its ranks (REST), keep submitted ones, count discarded and drafts.

    Rankings are restricted to the slots the plan filled: empty slots, which a submitted ranking must
    still place, never win.
    """
    from argilla_setup.rankings import iter_rankings
    from loop.phases.aggregate import RecordCandidates, Response

    with Api(conn) as api:
        by_ext = {r.external_id: r for r in iter_rankings(api, dataset_id)}
    records, responses, raw = [], {}, []
    discarded = draft = missing = 0
    for rec in plan:
        settings = {
            slot: {"model": c.model, "temperature": c.temperature, **c.settings}
            for slot, c in rec.slots.items()
        }
        records.append(
            RecordCandidates(
                record_id=rec.external_id,
                example_id=rec.example_id,
                turn=rec.message_index,
                slots={slot: c.text for slot, c in rec.slots.items()},
                current=rec.slots[rec.original_slot].text if rec.original_slot else "",
                original_slot=rec.original_slot,
                settings=settings,
            )
        )
        got = by_ext.get(rec.external_id)
        if got is None:
            missing += 1
            continue
        kept = []
        for r in got.responses:
            raw.append(
                {
                    "record": rec.external_id,
                    "user": r.username or r.user_id,
                    "status": r.status,
                    "ranking": list(r.ranking),
                    "better_answer": r.better_answer,
                    "none_acceptable": r.none_acceptable,
                }
            )
            if r.status == "discarded":
                discarded += 1
            elif r.status == "draft":
                draft += 1
            elif r.status == "submitted":
                ranking = tuple((slot, rank) for slot, rank in r.ranking if slot in rec.slots)
                kept.append(
                    Response(r.username or r.user_id, ranking, r.better_answer, bool(r.none_acceptable))
                )
        responses[rec.external_id] = kept
    return Pulled(records, responses, discarded, draft, missing, raw)
