"""The evaluation's Argilla side: push the blind A/B records, wait for the judges, pull their verdicts.

Push creates `<run>-eval-<name>` (idempotent) and upserts the records by their keyed ids, so a re-run
after a kill never duplicates; waiting is the rounds' (`loop.phases.wait`: webhooks, polling, deadline);
pull reads every submitted response through REST and maps A/B back to models through `pairs.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from argilla_setup import pairwise
from argilla_setup.connection import Api, Connection
from loop.errors import ArgillaError
from loop.evaluation.pairs import PairRecord
from loop.evaluation.stats import Judgement
from loop.fsutil import write_json


@dataclass(frozen=True)
class Pushed:
    dataset_id: str
    dataset_name: str
    workspace: str
    records: int
    url: str
    key: str  # hash of the pushed records: a changed plan pushes again


def record_body(rec: PairRecord, *, multi_turn: bool) -> dict:
    """The REST upsert item: the context and the two answers; no model name anywhere."""
    from argilla_setup.schema import CONVERSATION_FIELD, QUESTION_FIELD

    fields: dict = {
        pairwise.ANSWER_A: rec.answer_a or "(empty answer)",
        pairwise.ANSWER_B: rec.answer_b or "(empty answer)",
    }
    if multi_turn:
        fields[CONVERSATION_FIELD] = [{"role": m["role"], "content": m["content"]} for m in rec.context]
    else:
        fields[QUESTION_FIELD] = rec.context[-1]["content"]
    return {
        "external_id": rec.record_id,
        "fields": fields,
        "metadata": {pairwise.META_QUESTION_ID: rec.question_id},
    }


def is_multi_turn(records: Sequence[PairRecord]) -> bool:
    return any(len(r.context) > 1 for r in records)


def push(
    conn: Connection,
    records: Sequence[PairRecord],
    *,
    run: str,
    name: str,
    workspace: str,
    min_submitted: int,
    key: str,
    out: Path,
    progress: bool = False,
) -> Pushed:
    from loop.annotate import count_records, ensure_dataset, upsert_records

    ds_name = pairwise.dataset_name(run, name)
    multi = is_multi_turn(records)
    options = pairwise.PairwiseOptions(multi_turn=multi, min_submitted=min_submitted)
    with Api(conn) as api:
        ds, _ = ensure_dataset(
            conn,
            api,
            name=ds_name,
            workspace=workspace,
            settings_factory=lambda c: pairwise.pairwise_settings(options, client=c),
        )
        upsert_records(api, ds["id"], [record_body(r, multi_turn=multi) for r in records], progress=progress)
        total = count_records(api, ds["id"])
    if total != len(records):
        raise ArgillaError(
            f"dataset {ds_name} holds {total} records after the push, the evaluation has {len(records)}: "
            "records were added by hand or the evaluation changed; use a new --name"
        )
    result = Pushed(
        ds["id"], ds_name, workspace, total, f"{conn.api_url}/dataset/{ds['id']}/annotation-mode", key
    )
    write_json(out, asdict(result))
    return result


def read_pushed(path: Path) -> Pushed | None:
    try:
        return Pushed(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def wait(conn: Connection, pushed: Pushed, config, *, on_progress: Callable | None = None):
    """Block until the records are judged (the rounds' wait: webhooks, polling, `wait.*`)."""
    from loop.phases.wait import wait_for_completion

    a = config.argilla
    with Api(conn) as api:
        return wait_for_completion(
            api,
            pushed.dataset_id,
            config.wait,
            tag=f"pickloop:{config.run.name}:eval-{pushed.dataset_name}",
            labelers=a.labelers,
            min_submitted=a.min_submitted,
            on_progress=on_progress,
            remote=bool(a.api_url),
        )


@dataclass(frozen=True)
class Verdict:
    """One judge's submitted answer to one record, with the models behind A and B (from the plan)."""

    record_id: str
    question_id: str
    model_a: str
    model_b: str
    outcome: str  # "a" | "b" | "tie"
    annotator: str
    comment: str | None = None


def pull(conn: Connection, pushed: Pushed, records: Sequence[PairRecord]) -> list[Verdict]:
    """Every submitted verdict, in the dataset's record order; A/B mapped to models through the plan."""
    from argilla_setup.rankings import iter_records, usernames

    plan = {r.record_id: r for r in records}
    rows = []
    with Api(conn) as api:
        names = usernames(api)
        for raw in iter_records(api, pushed.dataset_id):
            rec = plan.get(raw.get("external_id"))
            if rec is None:
                continue
            for response in raw.get("responses") or ():
                if response.get("status") != "submitted":
                    continue
                values = response.get("values") or {}
                outcome = (values.get(pairwise.PREFERENCE_QUESTION) or {}).get("value")
                if outcome not in pairwise.PREFERENCE_LABELS:
                    continue
                comment = (values.get(pairwise.COMMENT_QUESTION) or {}).get("value")
                rows.append(
                    Verdict(
                        rec.record_id,
                        rec.question_id,
                        rec.model_a,
                        rec.model_b,
                        outcome,
                        names.get(response["user_id"], response["user_id"]),
                        comment if isinstance(comment, str) and comment.strip() else None,
                    )
                )
    return rows


def judgements(rows: Sequence[Verdict]) -> list[Judgement]:
    return [Judgement(r.question_id, r.model_a, r.model_b, r.outcome, r.annotator, r.record_id) for r in rows]
