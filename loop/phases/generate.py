"""Phase `generate`: the tuned model answers its own training questions, K candidates per turn."""

from __future__ import annotations

import time
from dataclasses import dataclass

from loop.context import RoundContext


@dataclass(frozen=True)
class Summary:
    turns: int
    candidates: int
    same_as_current: int  # turns where a candidate equals the dataset's current answer
    generate_runtime_s: float | None = None


def run(ctx: RoundContext) -> Summary:
    from loop.generate import generate_candidates

    examples = ctx.examples()
    ctx.limit_cpu_threads()
    started = time.monotonic()
    turns = generate_candidates(
        examples,
        ctx.paths.model,
        ctx.config.generate,
        ctx.paths.candidates,
        seed=ctx.seed,
        model_settings=ctx.config.model,
        progress=ctx.progress,
    )
    return Summary(
        turns=len(turns),
        candidates=sum(len(t.candidates) for t in turns),
        same_as_current=sum(any(c.is_current for c in t.candidates) for t in turns),
        generate_runtime_s=time.monotonic() - started,
    )
