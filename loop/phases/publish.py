"""Phase `publish`: the round's dataset as revision `round-N` (Hub repo or the local store).

The round's dataset is aggregate's `output.parquet`, or the review's `reviewed.parquet` when the
`review` phase decided conflicted turns (`RunState.round_output`).

Exactly once per round, even across crashes: see `loop.revisions` for how an interrupted publish is
found and finished instead of repeated. The revision also carries the labelers' rankings as
preference data (configs `preferences` and `preferences_kto`, `loop.preferences`), built from
`pulled.json`, the review's responses for the turns it decided, and the round's input, so a re-run
builds the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.context import RoundContext

if TYPE_CHECKING:
    from loop.preferences import PreferenceData


@dataclass(frozen=True)
class Summary:
    revision: str
    commit: str | None = None
    url: str | None = None
    backend: str | None = None
    preferences: dict[str, int] | None = None  # config -> rows published with the round


def run(ctx: RoundContext) -> Summary:
    import datasets

    from loop.models import load_round_model
    from loop.revisions import RoundStats, publish_round

    ds = datasets.Dataset.from_parquet(str(ctx.state().round_output(ctx.round)))
    aggregated = ctx.summary("aggregate")
    reviewed = ctx.summary("review")
    changed = aggregated.changed if aggregated else None
    review = None
    if reviewed is not None and reviewed.queued:
        review = {"queued": reviewed.queued, "reviewed": reviewed.reviewed, "changed": reviewed.changed}
        if reviewed.rewritten and reviewed.round_changed is not None:
            changed = reviewed.round_changed
    pushed = ctx.summary("push")
    selection = None
    if pushed is not None and pushed.selected is not None:
        selection = {
            "selected": pushed.selected,
            "not_selected": pushed.not_selected,
            "verified_unchanged": pushed.verified_unchanged,
        }
    prefs = preference_data(ctx)
    if not ctx.config.publish.labeler_names:
        from loop.annotate import shuffle_key

        prefs = prefs.pseudonymised(shuffle_key())
    model = load_round_model(ctx.paths.model)
    stats = RoundStats.from_dataset(
        ds,
        ctx.round,
        changed=changed,
        base_model=model.original_base,
        adapter=str(model.adapter_dir),
        simulated_labelers=ctx.simulated_labelers,
        selection=selection,
        conflicts=getattr(aggregated, "conflicts", None) if aggregated else None,
        configs=prefs.counts(),
        review=review,
        holdout=holdout_summary(ctx),
        evaluation=latest_evaluation(ctx),
    )
    rev = publish_round(
        ds,
        stats,
        ctx.config.publish,
        run_name=ctx.config.run.name,
        run_dir=ctx.run.dir,
        extra=prefs.datasets(),
    )
    done = "published" if rev.created else "already published"
    pairs = prefs.counts()["preferences"]
    ctx.report(f"round {ctx.round}: {done} {rev.revision} at {rev.url} ({pairs} preference pairs)")
    return Summary(rev.revision, rev.commit_sha, rev.url, rev.backend, prefs.counts())


def preference_data(ctx: RoundContext) -> PreferenceData:
    """The round's preference rows (usernames, before pseudonyms): `pulled.json`'s votes, with the
    review's deciding votes for the turns it decided."""
    from loop.preferences import read_round

    reviewed = ctx.summary("review")
    rewritten = reviewed is not None and reviewed.rewritten
    return read_round(
        ctx.paths.pulled,
        ctx.examples(),
        ctx.round,
        min_submitted=ctx.config.argilla.min_submitted,
        reviewed=ctx.paths.reviewed_decisions if rewritten else None,
        review_responses=ctx.paths.review_responses if rewritten else None,
    )


def holdout_summary(ctx: RoundContext) -> dict | None:
    """`eval.holdout_fraction`'s split, as recorded in the run directory (None without a hold-out)."""
    if not ctx.run.holdout.exists():
        return None
    count = sum(1 for line in ctx.run.holdout.read_text(encoding="utf-8").splitlines() if line.strip())
    return {"count": count, "fraction": ctx.config.eval.holdout_fraction, "seed": ctx.config.run.seed}


def latest_evaluation(ctx: RoundContext) -> dict | None:
    """The run's latest `pickloop eval` result for the card (one line per model), or None."""
    from loop.evaluation.report import card_entry, latest_report

    report = latest_report(ctx.run.dir)
    return None if report is None else card_entry(report)
