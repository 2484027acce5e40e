"""Phase `score`: value scores per assistant turn, so `select` can choose what labelers see.

Reads the round's `candidates.parquet` (and the previous round's decisions), writes `scores.parquet`,
one row per (example, assistant turn); in a multi-turn conversation the history is the question.

- `ifd_round`: Instruction-Following Difficulty of the current answer under the round model (Cherry
  LLM, Li et al. 2024, "From Quantity to Quality"): `IFD(Q, A) = s(A|Q) / s(A)`, `s` the mean
  per-token cross-entropy of the answer's tokens (plus end of turn) with and without the
  question/history in context; "without" is the chat template's generation prompt alone. Two batched
  forward passes (`generate.score`). Near 0: the question makes the answer easy; above 1: the
  question does not help (the answer does not follow from it, or the model has not learned it).
  Lengths: the answer keeps at least half of `min(model context, train.sft.max_length)`, the history
  keeps its end (as `generate` cuts prompts).
- `ifd_base`: the same under the base model (`model.name_or_path`), when `select.base_ifd` is on.
- `current_logprob`: the current answer's mean log-probability under the round model, as `generate`
  computed it (`current_mean_logprob`; not recomputed).
- `disagreement`: `(d_current + d_candidates) / 2`, with `d_current` = 1 - mean token F1 between the
  current answer and each of the K candidates, `d_candidates` = mean of 1 - token F1 over all pairs of
  the K candidates (duplicates count once per sample, so K identical samples give 0). In [0, 1];
  None when the model gave no candidate.
- `verified_unchanged`: labelers already settled this exact answer and the model offers nothing new.
  True when, in the previous round, labelers decided the turn (a completed decision, not flagged
  "none acceptable", not a conflict: labelers who disagree settled nothing) or it was auto-kept as `verified_unchanged` itself, the answer they kept equals
  the current answer (whitespace aside), and every candidate now has token F1 >= 0.9
  (`SAME_F1`) with one of the options labelers ranked then (their candidates and the original).
  `ranked_options` keeps those options, so a turn skipped again and again is compared with what
  labelers last saw, not with the round before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

from loop.context import RoundContext
from loop.fsutil import atomic_path
from loop.paths import RoundPaths
from loop.textsim import token_f1

SAME_F1 = 0.9
"""Token F1 at or above which a candidate counts as one labelers already ranked."""


@dataclass(frozen=True)
class Summary:
    turns: int = 0
    verified_unchanged: int = 0
    mean_ifd_round: float | None = None
    mean_ifd_base: float | None = None
    mean_disagreement: float | None = None


@dataclass(frozen=True)
class TurnScores:
    example_id: str
    turn: int  # 0-based ordinal among the conversation's assistant turns
    message_index: int
    ifd_round: float | None = None
    ifd_base: float | None = None
    current_logprob: float | None = None
    disagreement: float | None = None
    verified_unchanged: bool = False
    ranked_options: list[str] = field(default_factory=list)


def run(ctx: RoundContext) -> Summary:
    from loop.models import load_generation_model
    from loop.phases.generate import DEFAULT_MAX_LENGTH, load_candidates

    cfg = ctx.config
    ctx.limit_cpu_threads()
    turns = load_candidates(ctx.paths.candidates)
    examples = ctx.examples()
    max_length = cfg.train.sft.get("max_length", DEFAULT_MAX_LENGTH)
    model, tokenizer = load_generation_model(ctx.paths.model, cfg.model)
    ifd_round = ifd_scores(model, tokenizer, examples, max_length)
    del model
    ifd_base: dict[tuple[str, int], float | None] = {}
    if cfg.select.base_ifd:
        base, _ = load_generation_model(cfg.model.name_or_path, cfg.model)
        ifd_base = ifd_scores(base, tokenizer, examples, max_length)  # same vocabulary: LoRA adds no tokens
        del base
    previous = (
        verified_answers(ctx.previous, ctx.state().round_decisions(ctx.round - 1))
        if ctx.previous is not None
        else {}
    )
    rows = []
    for t in turns:
        key = (t.example_id, t.message_index)
        samples = [c.text for c in t.candidates for _ in range(c.count)]
        verified, options = is_verified_unchanged(t.current_answer, samples, previous.get(key))
        rows.append(
            TurnScores(
                t.example_id,
                t.turn,
                t.message_index,
                ifd_round=ifd_round.get(key),
                ifd_base=ifd_base.get(key),
                current_logprob=t.current_mean_logprob,
                disagreement=disagreement(t.current_answer, samples),
                verified_unchanged=verified,
                ranked_options=options,
            )
        )
    write_scores(rows, ctx.paths.scores)
    summary = Summary(
        turns=len(rows),
        verified_unchanged=sum(r.verified_unchanged for r in rows),
        mean_ifd_round=_mean([r.ifd_round for r in rows]),
        mean_ifd_base=_mean([r.ifd_base for r in rows]),
        mean_disagreement=_mean([r.disagreement for r in rows]),
    )
    ctx.report(
        f"round {ctx.round}: scored {summary.turns} turns (mean IFD {_fmt(summary.mean_ifd_round)}, "
        f"disagreement {_fmt(summary.mean_disagreement)}); {summary.verified_unchanged} verified and unchanged"
    )
    return summary


# --------------------------------------------------------------------------- IFD


def ifd_token_ids(examples, tokenizer, limit: int | None):
    """Per assistant turn: (key, prompt with the history, prompt without it, answer ids) as scored.

    The answer is its tokens + end of turn, cut to keep at least half of `limit`; the history keeps its
    end. Both prompts are scored on the same answer tokens."""
    from loop.phases.generate import _prompts

    empty = _empty_prompt(tokenizer)
    out = []
    for ex, _, idx, prompt in _prompts(examples, tokenizer):
        answer = tokenizer(ex.messages[idx]["content"], add_special_tokens=False)["input_ids"]
        answer = [*answer, tokenizer.eos_token_id]
        if limit:
            answer = answer[: max(1, limit - max(min(len(prompt), limit // 2), len(empty)))]
            prompt = prompt[-max(1, limit - len(answer)) :]
        out.append(((ex.id, idx), prompt, empty, answer))
    return out


def ifd_scores(model, tokenizer, examples, max_length: int | None) -> dict[tuple[str, int], float | None]:
    """`(example id, message index) -> s(A|Q) / s(A)` under `model` (None when s(A) is 0)."""
    import torch

    from loop.models import context_length
    from loop.phases.generate import score

    limits = [n for n in (context_length(model), max_length) if n]
    rows = ifd_token_ids(examples, tokenizer, min(limits) if limits else None)
    answers = [r[3] for r in rows]
    with torch.inference_mode():
        with_q = score(model, [r[1] for r in rows], answers)
        without_q = score(model, [r[2] for r in rows], answers)
    return {r[0]: ifd(a, b) for r, a, b in zip(rows, with_q, without_q, strict=True)}


def ifd(logprob_with_question: float | None, logprob_alone: float | None) -> float | None:
    """IFD from two mean log-probabilities (the cross-entropies are their negatives)."""
    if logprob_with_question is None or logprob_alone is None or logprob_alone == 0:
        return None
    return logprob_with_question / logprob_alone


def _empty_prompt(tokenizer) -> list[int]:
    """The assistant's generation prompt with no conversation before it (the answer 'alone')."""
    try:
        text = tokenizer.apply_chat_template([], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    except Exception:  # a template that needs a user message: start from the first token only
        ids = []
    if not ids:
        first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [first]
    return ids


# --------------------------------------------------------------------------- disagreement, verified


def disagreement(current: str, samples: Sequence[str]) -> float | None:
    """`(d_current + d_candidates) / 2` over the K candidate samples (see the module docstring)."""
    if not samples:
        return None
    d_current = 1 - sum(token_f1(s, current) for s in samples) / len(samples)
    pairs = list(combinations(samples, 2))
    d_candidates = 1 - sum(token_f1(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0
    return (d_current + d_candidates) / 2


@dataclass(frozen=True)
class Verified:
    """What labelers settled for one turn in an earlier round: the answer and the options they ranked."""

    answer: str
    options: tuple[str, ...]


def verified_answers(paths: RoundPaths, decisions: Path | None = None) -> dict[tuple[str, int], Verified]:
    """`(example id, message index) -> Verified` from a finished round's decisions (default
    `paths.decisions`; after a review, its `reviewed.jsonl`), plan and scores. A conflict counts as
    verified only once a review decided it."""
    from loop.annotate import read_plan

    decisions = decisions or paths.decisions
    if not decisions.exists():
        return {}
    plan = (
        {(r.example_id, r.message_index): r for r in read_plan(paths.dir)} if paths.push_plan.exists() else {}
    )
    chained = (
        {(s.example_id, s.message_index): s for s in load_scores(paths.scores)}
        if paths.scores.exists()
        else {}
    )
    out = {}
    for line in decisions.read_text(encoding="utf-8").splitlines():
        if not line:
            continue
        d = json.loads(line)
        key = (d["example_id"], int(d["turn"]))
        if d["choice"] == "auto_kept":
            if d.get("reason") == "verified_unchanged" and key in chained:
                out[key] = Verified(d["answer"], tuple(chained[key].ranked_options))
        elif (
            d.get("completed")
            and not d.get("flagged_none_acceptable")
            and (not d.get("conflict") or d.get("reviewed_by"))
            and key in plan
        ):
            options = tuple(c.text for c in plan[key].slots.values())
            out[key] = Verified(d["answer"], options + ((d["answer"],) if d["choice"] == "edited" else ()))
    return out


def is_verified_unchanged(
    current: str, samples: Sequence[str], verified: Verified | None
) -> tuple[bool, list[str]]:
    """(verified and unchanged, the options to compare with next round) for one turn."""
    if verified is None or " ".join(verified.answer.split()) != " ".join(current.split()):
        return False, []
    options = list(verified.options)
    same = all(max((token_f1(s, o) for o in options), default=0.0) >= SAME_F1 for s in samples)
    return same, options


# --------------------------------------------------------------------------- the artifact


def write_scores(rows: Sequence[TurnScores], path: str | Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("example_id", pa.string()),
            ("turn", pa.int32()),
            ("message_index", pa.int32()),
            ("ifd_round", pa.float64()),
            ("ifd_base", pa.float64()),
            ("current_logprob", pa.float64()),
            ("disagreement", pa.float64()),
            ("verified_unchanged", pa.bool_()),
            ("ranked_options", pa.list_(pa.string())),
        ]
    )
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist([asdict(r) for r in rows], schema=schema), tmp)
    return Path(path)


def load_scores(path: str | Path) -> list[TurnScores]:
    import pyarrow.parquet as pq

    return [TurnScores(**r) for r in pq.read_table(path).to_pylist()]


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
