"""Phase `train`: LoRA fine-tune the model on the round's input (TRL SFTTrainer + PEFT)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from loop.context import RoundContext


@dataclass(frozen=True)
class Summary:
    examples: int
    first_loss: float | None = None
    final_loss: float | None = None
    train_runtime_s: float | None = None  # inside trainer.train()
    train_call_s: float | None = None  # the whole TRL/PEFT step: load, train, save


def run(ctx: RoundContext) -> Summary:
    from loop.train import load_round_model, train_round

    examples = ctx.examples()
    previous = load_round_model(ctx.previous.model) if ctx.previous else None
    ctx.limit_cpu_threads()
    started = time.monotonic()
    result = train_round(
        examples,
        ctx.config.model,
        ctx.config.train,
        ctx.paths.model,
        previous=previous,
        seed=ctx.seed,
    )
    return Summary(
        examples=len(examples),
        first_loss=result.first_loss,
        final_loss=result.final_loss,
        train_runtime_s=result.runtime_s,
        train_call_s=time.monotonic() - started,
    )
