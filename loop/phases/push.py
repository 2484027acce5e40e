"""Phase `push`: the round's candidates into an Argilla ranking dataset, blind and idempotent.

Only the turns `select` picks are sent (`loop.selection`, from the `score` phase's `scores.parquet`),
highest value first; `selection.jsonl` records every turn's fate for `aggregate`.

The push plan (slot -> source for every record) is written to the run directory before anything
reaches Argilla; records are upserted by deterministic external ids, so a re-run never duplicates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from loop.context import RoundContext
from loop.errors import StateError


@dataclass(frozen=True)
class Summary:
    dataset: str
    dataset_id: str
    records: int
    url: str | None = None
    strategy: str | None = None  # select.strategy (None: pushed before selection existed)
    selected: int | None = None  # turns sent to labelers
    not_selected: int = 0  # auto-kept: outside the budget
    verified_unchanged: int = 0  # auto-kept: labelers already verified the answer, candidates unchanged


def schema_options(ctx: RoundContext):
    from argilla_setup.schema import SchemaOptions

    a = ctx.config.argilla
    multi = any(len(ex.assistant_turns()) > 1 or ex.messages[0]["role"] == "system" for ex in ctx.examples())
    return SchemaOptions(
        score_metadata=wants_score_metadata(ctx),
        multi_turn=multi,
        edit_question=a.edit_question,
        none_acceptable=a.none_acceptable,
        min_submitted=a.min_submitted,
    )


def run(ctx: RoundContext) -> Summary:
    from loop import annotate
    from loop.phases.generate import load_candidates

    cfg = ctx.config
    slots = cfg.generate.k + 1  # the current answer plus K generated candidates
    turns = load_candidates(ctx.paths.candidates)
    chosen, scores = choose(ctx, turns)
    by_key = {(t.example_id, t.message_index): t for t in turns}
    turns = [by_key[(t.example_id, t.message_index)] for t in chosen.asked()]
    model_name = f"{Path(cfg.model.name_or_path).name}@round-{ctx.round}"
    meta = score_metadata(chosen, scores) if wants_score_metadata(ctx) else {}
    items = [
        annotate.item_from_turn(t, model_name, scores=meta.get((t.example_id, t.message_index)))
        for t in turns
    ]
    plan = annotate.plan_records(items, run=cfg.run.name, round_n=ctx.round, slots=slots, seed=cfg.run.seed)
    annotate.write_plan(ctx.paths.dir, plan)
    conn = ctx.connection()
    ensure_labelers(ctx, conn)
    result = annotate.push(
        conn,
        plan,
        round_dir=ctx.paths.dir,
        run=cfg.run.name,
        round_n=ctx.round,
        workspace=cfg.argilla.workspace,
        slots=slots,
        options=schema_options(ctx),
        suggest=cfg.argilla.suggest_model_choice,
        progress=ctx.progress,
    )
    ctx.report(
        f"round {ctx.round}: {result.records} records in Argilla dataset {result.dataset_name}: {result.url}"
    )
    counts = chosen.counts()
    return Summary(
        result.dataset_name,
        result.dataset_id,
        result.records,
        result.url,
        strategy=cfg.select.strategy,
        selected=counts["selected"],
        not_selected=counts["not_selected"],
        verified_unchanged=counts["verified_unchanged"],
    )


def wants_score_metadata(ctx: RoundContext) -> bool:
    """`argilla.score_metadata`, where null means: only on the embedded server (see its description)."""
    a = ctx.config.argilla
    return a.score_metadata if a.score_metadata is not None else not a.api_url


def score_metadata(chosen, scores) -> dict[tuple[str, int], dict[str, float]]:
    """(example id, message index) -> the turn's scores and selection value, finite numbers only."""
    from argilla_setup.schema import SCORE_METADATA

    value = {(t.example_id, t.message_index): t.value for t in chosen.turns}
    out = {}
    for s in scores:
        key = (s.example_id, s.message_index)
        numbers = {name: getattr(s, name, None) for name in SCORE_METADATA if name != "value"}
        numbers["value"] = value.get(key)
        out[key] = {k: float(v) for k, v in numbers.items() if isinstance(v, int | float) and math.isfinite(v)}
    return out


def choose(ctx: RoundContext, turns):
    """Apply `select` to the round's scores; writes `selection.jsonl` and reports what was left out.
    Returns the selection and the scores it was made from."""
    from loop.phases.score import TurnScores, load_scores
    from loop.selection import review_turns, select, write_selection

    s = ctx.config.select
    if ctx.paths.scores.exists():
        scores = load_scores(ctx.paths.scores)
    elif s.strategy == "all" and not s.skip_verified:  # a round scored before `score` existed (m003)
        scores = [TurnScores(t.example_id, t.turn, t.message_index) for t in turns]
    else:
        raise StateError(
            f"{ctx.paths.scores} is missing and select.strategy is {s.strategy}: score the round first "
            f"(`pickloop round redo score CONFIG --round {ctx.round}`)"
        )
    force = review_turns(ctx.state().round_decisions(ctx.round - 1)) if ctx.previous is not None else set()
    chosen = select(scores, s, seed=ctx.seed if s.seed is None else s.seed, force=force)
    for warning in chosen.warnings:
        ctx.report(f"round {ctx.round}: {warning}")
    write_selection(chosen, ctx.paths.selection)
    counts = chosen.counts()
    if counts["conflict_review"]:
        ctx.report(f"round {ctx.round}: asking again about {counts['conflict_review']} turns labelers disagreed on")
    if counts["not_selected"] or counts["verified_unchanged"]:
        ctx.report(
            f"round {ctx.round}: asking labelers about {counts['selected']} of {len(chosen.turns)} turns "
            f"({s.strategy}); auto-kept {counts['not_selected']} not selected, "
            f"{counts['verified_unchanged']} verified and unchanged"
        )
    return chosen, scores


def ensure_labelers(ctx: RoundContext, conn) -> None:
    """Create the configured labelers that do not exist yet; credentials go to 0600 files, and the
    password is shown only on an interactive terminal (never into a log)."""
    import sys

    from argilla_setup import users
    from argilla_setup.connection import Api

    a = ctx.config.argilla
    if not a.labelers:
        return
    with Api(conn) as api:
        ws = api.workspace_by_name(a.workspace) or api.post("/api/v1/workspaces", json={"name": a.workspace})
        existing = {u.name: u for u in users.list_users(api)}
        new = [name for name in a.labelers if name not in existing]
        if new:
            for user in users.add_users(api, new, workspace=a.workspace, home=a.home):
                ctx.report(users.describe_new_user(user, interactive=sys.stdout.isatty()))
        for name in a.labelers:
            if name in existing and a.workspace not in existing[name].workspaces:
                user_id = next(u["id"] for u in api.get("/api/v1/users")["items"] if u["username"] == name)
                api.post(f"/api/v1/workspaces/{ws['id']}/users", json={"user_id": user_id})
