"""Optional review of generated pairs in Argilla before round 1: labelers accept or reject each pair
(optionally fixing its question or answer), and only accepted pairs become the step-1 data.

`push` builds one record per question-answer row of a seed-data file (external id = the row id, so a
re-push updates and never duplicates), showing the passage it came from (read back from the
documents by doc id and character offsets), the question and the answer. `pull` reads the submitted
responses over REST and writes the reviewed file atomically: a pair is kept when more of its
submitted responses accept than reject; a fix in the accepting responses (the last one given)
replaces the text and marks the row `review: edited`. Pairs nobody submitted yet are left out and
counted. Conversation rows are not reviewed and pass through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop.errors import DataError, StateError
from loop.seed.documents import Document

DECISION = "decision"
ACCEPT, REJECT = "accept", "reject"
QUESTION_FIX, ANSWER_FIX = "question_fix", "answer_fix"
PASSAGE, QUESTION, ANSWER = "passage", "question", "answer"
GUIDELINES = (
    "Each record is a question-answer pair generated from the passage shown. Accept it when the question "
    "makes sense on its own and the passage supports the answer; reject it otherwise. To fix a pair "
    "worth keeping, accept it and write the corrected question or answer in the optional boxes."
)


def review_settings(client=None):
    """The review dataset's `rg.Settings`: passage, question and answer fields; accept/reject and fixes."""
    import argilla as rg

    from argilla_setup.schema import _sdk_client

    c = _sdk_client(client)
    return rg.Settings(
        fields=[
            rg.TextField(name=PASSAGE, title="Passage", use_markdown=True, client=c),
            rg.TextField(name=QUESTION, title="Question", use_markdown=True, client=c),
            rg.TextField(name=ANSWER, title="Answer", use_markdown=True, client=c),
        ],
        questions=[
            rg.LabelQuestion(
                name=DECISION,
                title="Keep this pair?",
                labels={ACCEPT: "Accept", REJECT: "Reject"},
                required=True,
                client=c,
            ),
            rg.TextQuestion(name=QUESTION_FIX, title="Fixed question (optional)", required=False, client=c),
            rg.TextQuestion(name=ANSWER_FIX, title="Fixed answer (optional)", required=False, client=c),
        ],
        guidelines=GUIDELINES,
    )


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """A seed-data file's rows, checked as `pickloop run` checks them."""
    from loop.data import load_jsonl

    load_jsonl(path)  # file, line and field on any problem
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def record_bodies(rows: Sequence[dict[str, Any]], docs: Sequence[Document]) -> list[dict[str, Any]]:
    """REST upsert items for the question-answer rows; `DataError` when a row's document is missing."""
    by_id = {d.doc_id: d for d in docs}
    bodies = []
    for n, row in enumerate(rows, start=1):
        if "question" not in row:
            continue
        doc = by_id.get(row.get("doc_id"))
        if doc is None:
            raise DataError(
                f"document {row.get('doc_id')!r} is not among the given documents; pass the folder seed-data read",
                line=n,
                field="doc_id",
            )
        passage = doc.text[row["char_start"] : row["char_end"]]
        bodies.append(
            {
                "external_id": str(row["id"]),
                "fields": {
                    PASSAGE: f"**{doc.title}**\n\n{passage}",
                    QUESTION: row["question"],
                    ANSWER: row["answer"],
                },
            }
        )
    return bodies


@dataclass(frozen=True)
class PushResult:
    dataset_id: str
    name: str
    records: int
    url: str


def push(
    conn, rows: Sequence[dict[str, Any]], docs: Sequence[Document], *, name: str, workspace: str
) -> PushResult:
    from argilla_setup.connection import Api
    from loop.annotate import count_records, ensure_dataset, upsert_records

    bodies = record_bodies(rows, docs)
    if not bodies:
        raise DataError("no question-answer rows to review")
    with Api(conn) as api:
        ds, _ = ensure_dataset(conn, api, name=name, workspace=workspace, settings_factory=review_settings)
        upsert_records(api, ds["id"], bodies, progress=False)
        total = count_records(api, ds["id"])
    return PushResult(ds["id"], name, total, f"{conn.api_url}/dataset/{ds['id']}/annotation-mode")


def _records(api, dataset_id: str) -> Iterator[dict[str, Any]]:
    from argilla_setup.rankings import PAGE_SIZE

    offset = 0
    while True:
        page = api.get(
            f"/api/v1/datasets/{dataset_id}/records",
            params={"include": "responses", "offset": offset, "limit": PAGE_SIZE},
        )
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


def _value(response: dict[str, Any], name: str) -> str | None:
    entry = (response.get("values") or {}).get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class PullResult:
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    pending: int = 0
    passed_through: int = 0  # conversation rows, not reviewed


def pull(conn, rows: Sequence[dict[str, Any]], *, name: str, workspace: str, out: str | Path) -> PullResult:
    """Write the reviewed rows to `out` (atomically); see the module docstring for the rule."""
    from argilla_setup.connection import Api
    from loop.errors import NotFoundError
    from loop.fsutil import write_text

    with Api(conn) as api:
        try:
            ds = api.dataset_by_name(name, workspace)
        except NotFoundError:
            raise StateError(
                f"no review dataset {name!r} in workspace {workspace!r}; push it first"
            ) from None
        decided: dict[str, tuple[str, str | None, str | None]] = {}
        for record in _records(api, ds["id"]):
            submitted = [r for r in record.get("responses") or () if r.get("status") == "submitted"]
            accepts = [r for r in submitted if _value(r, DECISION) == ACCEPT]
            if not submitted:
                continue
            if len(accepts) * 2 <= len(submitted):
                decided[record["external_id"]] = (REJECT, None, None)
                continue
            fixes = [(_value(r, QUESTION_FIX), _value(r, ANSWER_FIX)) for r in accepts]
            question = next((q for q, _ in reversed(fixes) if q), None)
            answer = next((a for _, a in reversed(fixes) if a), None)
            decided[record["external_id"]] = (ACCEPT, question, answer)
    kept, counts = [], {"accepted": 0, "edited": 0, "rejected": 0, "pending": 0, "passed_through": 0}
    for row in rows:
        if "question" not in row:
            kept.append(row)
            counts["passed_through"] += 1
            continue
        verdict = decided.get(str(row["id"]))
        if verdict is None:
            counts["pending"] += 1
        elif verdict[0] == REJECT:
            counts["rejected"] += 1
        else:
            _, question, answer = verdict
            edited = bool(question and question != row["question"]) or bool(
                answer and answer != row["answer"]
            )
            kept.append(
                {
                    **row,
                    "question": question or row["question"],
                    "answer": answer or row["answer"],
                    "review": "edited" if edited else "accepted",
                }
            )
            counts["edited" if edited else "accepted"] += 1
    if not any(r.get("review") for r in kept):
        raise DataError(
            f"no accepted pairs yet ({counts['rejected']} rejected, {counts['pending']} not reviewed); "
            "nothing written",
            file=out,
        )
    write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return PullResult(**counts)
