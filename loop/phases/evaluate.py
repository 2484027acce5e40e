"""Phase `eval`: after publish, the round's model against base and earlier rounds, judged blind.

Off by default: a no-op (nothing loaded, nothing pushed) unless `eval.every_round` is on or the round
is in `eval.after_rounds`. When on, it runs exactly `pickloop eval`'s steps (`loop.evaluation.run`)
as evaluation `round-<n>` (`<run dir>/eval/round-<n>/`, Argilla dataset `<run>-eval-round-<n>`), so a
killed phase resumes where it stopped (answers, records and the push are reused), and the result goes
into the card of the revision publish just wrote ("evaluated after round N").

Models: `eval.models` plus this round's model, or by default `base`, every round this phase evaluated
before, and this round: `after_rounds: [1, 3]` compares base and round-1 after round 1, then base,
round-1 and round-3 after round 3. The judges are the labelers (`argilla.*`), waited for as a round
waits (`wait.*`).

The phase has no config keys of its own: changing `eval.*` between rounds changes what later rounds
evaluate and never refuses or redoes a finished round (`pickloop eval` compares any models at any time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loop.context import RoundContext

NAME = "round-{n}"


@dataclass(frozen=True)
class Summary:
    evaluated: bool = False
    name: str | None = None  # the evaluation's name (its folder under <run dir>/eval)
    models: list[str] = field(default_factory=list)
    judgements: int | None = None
    headline: str | None = None
    lines: list[str] = field(default_factory=list)  # one per model, as `pickloop status` shows them
    skipped: str | None = None  # why nothing was evaluated (a no-op phase; the demo report hides it)


def models_for(ctx: RoundContext) -> list[str]:
    """`eval.models` (or base and the rounds evaluated before) plus this round's model."""
    from loop.phases import PHASES

    e = ctx.config.eval
    if e.models:
        names = list(e.models)
    else:
        state = ctx.state()
        earlier = [
            m
            for m in sorted(state.rounds)
            if m < ctx.round
            and (rec := state.record(m, "eval")) is not None
            and PHASES["eval"].summary_from(rec.summary).evaluated
        ]
        names = ["base", *(f"round-{m}" for m in earlier)]
    this = f"round-{ctx.round}"
    return names if this in names else [*names, this]


def run(ctx: RoundContext) -> Summary:
    e = ctx.config.eval
    if not (e.every_round or e.after_rounds):
        return Summary(skipped="eval.every_round and eval.after_rounds are not set")
    if not e.evaluates_after(ctx.round):
        ctx.report(f"round {ctx.round}: no evaluation this round (eval.after_rounds: {e.after_rounds})")
        return Summary(skipped=f"round {ctx.round} is not in eval.after_rounds")
    from loop.evaluation.report import headline
    from loop.evaluation.run import run_eval

    models = models_for(ctx)
    name = NAME.format(n=ctx.round)
    ctx.report(f"round {ctx.round}: evaluation {name} of {', '.join(models)}")
    result = run_eval(ctx.config, models, name=name, report=ctx.report, progress=ctx.progress)
    for warning in result.report.warnings:
        ctx.report(f"eval {name}: warning: {warning}")
    return Summary(
        evaluated=True,
        name=name,
        models=models,
        judgements=result.report.judgements,
        headline=headline(result.report),
        lines=result.report.status_lines(),
    )
