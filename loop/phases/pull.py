"""Phase `pull`: read every response (with ranks) back from Argilla into the run directory.

Pull only reads the server. It writes `pulled.json` (what aggregation needs) and `responses.jsonl`
(the audit trail, one line per response), so re-aggregating never asks Argilla again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from loop.context import RoundContext
from loop.errors import StateError
from loop.fsutil import write_text


@dataclass(frozen=True)
class Summary:
    records: int | None
    responses: int = 0
    submitted: int = 0
    discarded: int = 0
    draft: int = 0
    legacy: bool = False  # pulled by a version that aggregated inside pull (no pulled.json)


def run(ctx: RoundContext) -> Summary:
    from loop import annotate

    plan = annotate.read_plan(ctx.paths.dir)
    pushed = annotate.read_push(ctx.paths.dir)
    pulled = annotate.pull(ctx.connection(), pushed.dataset_id, plan)
    if pulled.missing:
        raise StateError(
            f"{pulled.missing} of {len(plan)} planned records are missing from Argilla dataset "
            f"{pushed.dataset_name}; re-run the push phase (`pickloop round redo push CONFIG`) to restore them"
        )
    write_text(ctx.paths.responses, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pulled.raw))
    # Compact and from shallow copies: at 100k records `asdict` and an indented dump (json's pure-Python
    # encoder) took most of the phase; the fields hold only JSON values, so the file says the same.
    body = {
        "records": [dict(vars(r)) for r in pulled.records],
        "responses": {k: [dict(vars(r)) for r in v] for k, v in pulled.responses.items()},
        "discarded": pulled.discarded,
        "draft": pulled.draft,
    }
    write_text(ctx.paths.pulled, json.dumps(body, sort_keys=True, ensure_ascii=False, default=str) + "\n")
    return Summary(
        records=len(plan),
        responses=len(pulled.raw),
        submitted=sum(len(v) for v in pulled.responses.values()),
        discarded=pulled.discarded,
        draft=pulled.draft,
    )
