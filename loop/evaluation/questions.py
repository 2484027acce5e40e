"""Evaluation questions, and the guarantee that no round trains on them.

Either a separate question set (`eval.path`) or a fraction of the step-1 data held out before round 1
(`eval.holdout_fraction`). The hold-out is chosen by a hash of `run.seed` and each example's id, so it
is the same on every machine and independent of the file's order; `RoundContext.examples` removes it
from round 1's snapshot, the only door through which step-1 data reaches training, generation and
publishing. Whatever the source, questions that also appear in the training data are refused.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from loop.config import RunConfig
from loop.data import Example
from loop.errors import ConfigError, DataError, StateError
from loop.paths import RunPaths

SHOWN_OVERLAPS = 3


@dataclass(frozen=True)
class EvalQuestion:
    """One question every model answers: the conversation up to the user turn, and an optional reference."""

    id: str
    context: list[dict[str, str]]
    reference: str | None = None

    @property
    def prompt(self) -> str:
        """The user turn being answered."""
        return self.context[-1]["content"]

    def to_json(self) -> dict:
        return {"id": self.id, "context": self.context, "reference": self.reference}

    @classmethod
    def from_json(cls, raw: dict) -> EvalQuestion:
        return cls(str(raw["id"]), list(raw["context"]), raw.get("reference"))


def question_of(example: Example) -> EvalQuestion:
    """The last user turn of `example` as a question; a final assistant turn is its reference."""
    messages = example.messages
    if messages[-1]["role"] == "assistant":
        return EvalQuestion(example.id, list(messages[:-1]), messages[-1]["content"])
    return EvalQuestion(example.id, list(messages))


def holdout_rank(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"pickloop-holdout:{seed}:{example_id}".encode()).hexdigest()


def split_holdout(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(kept for training, held out): the `fraction * n` (rounded half up) (at least 1) with the smallest
    hash of (seed, id); both lists keep the data's order. Refuses to hold out everything."""
    n = len(examples)
    held_n = holdout_count(fraction, n)
    if held_n >= n:
        raise ConfigError(
            f"holding out {held_n} of {n} examples leaves nothing to train on; lower the fraction",
            key="eval.holdout_fraction",
        )
    held = {ex.id for ex in sorted(examples, key=lambda ex: holdout_rank(seed, ex.id))[:held_n]}
    return [ex for ex in examples if ex.id not in held], [ex for ex in examples if ex.id in held]


def load_questions(config: RunConfig, run: RunPaths) -> list[EvalQuestion]:
    """The evaluation questions of `config.eval`, checked: never empty, never overlapping training."""
    from loop.data import load_examples

    e = config.eval
    if e.path is not None:
        examples = load_examples(e.path, revision=e.revision, split=e.split, answer_optional=True)
    elif e.holdout_fraction is not None:
        if not run.holdout.exists():
            if run.round(1).input.exists():
                raise config.error(
                    "was set after round 1 took its snapshot of the step-1 data, so every example was "
                    "trained on; give a separate question set in eval.path, or start a new run",
                    "eval.holdout_fraction",
                )
            raise StateError(
                "the held-out questions are split off when round 1 starts; run round 1 first "
                "(`pickloop run CONFIG --rounds 1`), then evaluate"
            )
        examples = load_examples(run.holdout)
    else:
        raise config.error(
            "no evaluation questions: set eval.path (a question file or dataset) or "
            "eval.holdout_fraction (before round 1)",
            "eval",
        )
    questions = [question_of(ex) for ex in examples]
    check_no_overlap(questions, training_examples(config, run), source=e.path or str(run.holdout))
    return questions


def training_examples(config: RunConfig, run: RunPaths) -> list[Example]:
    """What the rounds train on: round 1's snapshot when it exists, else the configured data less the
    hold-out (later rounds keep the same questions, only answers change)."""
    from loop.data import load_examples

    snapshot = run.round(1).input
    if snapshot.exists():
        return load_examples(snapshot)
    d = config.data
    examples = load_examples(d.path, revision=d.revision, split=d.split)
    if config.eval.holdout_fraction is not None:
        examples, _ = split_holdout(examples, config.eval.holdout_fraction, config.run.seed)
    return examples


_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def check_no_overlap(questions: Sequence[EvalQuestion], training: Sequence[Example], *, source: str) -> None:
    """Refuse evaluation questions whose asked turn is also a user turn of the training data (whitespace
    and case aside): a model would be judged on what it memorised. Lists a few."""
    seen = {normalise(m["content"]): ex.id for ex in training for m in ex.messages if m["role"] == "user"}
    hits = [(q, seen[normalise(q.prompt)]) for q in questions if normalise(q.prompt) in seen]
    if hits:
        shown = "; ".join(
            f"{q.id!r} = training {tid!r} ({_short(q.prompt)})" for q, tid in hits[:SHOWN_OVERLAPS]
        )
        more = f" and {len(hits) - SHOWN_OVERLAPS} more" if len(hits) > SHOWN_OVERLAPS else ""
        raise DataError(
            f"{len(hits)} evaluation question(s) also in the training data: {shown}{more}; remove them "
            "from the evaluation set (a model would be judged on what it was trained on)",
            file=source,
        )


def _short(text: str, n: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def holdout_count(fraction: float, n: int) -> int:
    """Examples `fraction` holds out of `n`: rounded half up, at least one."""
    return max(1, math.floor(fraction * n + 0.5))
