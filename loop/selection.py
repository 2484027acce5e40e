"""Which assistant turns go to the labelers this round, and in what order (`select` settings).

Pure functions over the `score` phase's `TurnScores`; the push phase applies them and writes the
result to `selection.jsonl` (every turn: asked, or auto-kept and why), which `aggregate` reads to
give each turn not asked its current answer with `choice: auto_kept`.

1. `skip_verified`: turns that are `verified_unchanged` are auto-kept (reason `verified_unchanged`).
2. The budget: a fraction of the round's turns (rounded up) or a count, clamped (with a warning) to
   the turns left after step 1.
3. The strategy picks that many: `all` the first ones in data order (today's behaviour when the
   budget is 1.0), `random` a sample seeded by `select.seed` (default run.seed + round), `value`,
   `ifd_hard` and `disagreement` the highest by their score. The rest are auto-kept (`not_selected`).
4. Order: labelers get the selected turns highest `value` first (Argilla's queue shows records in
   insertion order); `all` keeps data order, `ifd_hard`/`disagreement` their own score's order.
5. Forced turns: a turn the previous round left as `conflict_review` (`aggregate.on_conflict:
   review`, `review_turns`: a conflict its `review` phase did not get an answer for) is asked again whatever steps 1-3 decided, on top of the budget, first in
   the queue (`forced: conflict_review`). Asked once more: if labelers disagree again, that round's
   `on_conflict` decides again.

`value` = sum over scores of `weight * normalised score`, each score normalised to its percentile rank
within the round (0 lowest, 1 highest, ties share their mean rank, a missing score counts 0.5), with
`current_logprob` negated first: a current answer the model finds unlikely is worth a look.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from loop.config import SelectSettings
from loop.fsutil import atomic_path

NOT_SELECTED = "not_selected"
VERIFIED_UNCHANGED = "verified_unchanged"
CONFLICT_REVIEW = "conflict_review"


@dataclass(frozen=True)
class Selected:
    """One assistant turn's fate this round."""

    example_id: str
    turn: int  # 0-based ordinal among the conversation's assistant turns
    message_index: int
    selected: bool
    reason: str | None = None  # why it was not asked: not_selected | verified_unchanged
    order: int | None = None  # 0-based position in the labelers' queue (selected turns only)
    value: float | None = None
    forced: str | None = None  # why it was asked whatever the budget said: conflict_review


@dataclass(frozen=True)
class Selection:
    turns: list[Selected]  # data order
    warnings: list[str]

    def asked(self) -> list[Selected]:
        return sorted((t for t in self.turns if t.selected), key=lambda t: t.order or 0)

    def counts(self) -> dict[str, int]:
        return {
            "selected": sum(t.selected for t in self.turns),
            NOT_SELECTED: sum(t.reason == NOT_SELECTED for t in self.turns),
            VERIFIED_UNCHANGED: sum(t.reason == VERIFIED_UNCHANGED for t in self.turns),
            CONFLICT_REVIEW: sum(t.forced == CONFLICT_REVIEW for t in self.turns),
        }


def percentiles(values: Sequence[float | None]) -> list[float]:
    """Each value's percentile rank in [0, 1] among the defined ones; ties share; None -> 0.5."""
    defined = sorted(v for v in values if v is not None and not math.isnan(v))
    if len(defined) < 2:
        return [0.5] * len(values)
    first: dict[float, int] = {}
    last: dict[float, int] = {}
    for i, v in enumerate(defined):
        first.setdefault(v, i)
        last[v] = i
    n = len(defined) - 1
    return [
        0.5 if v is None or math.isnan(v) else (first[v] + last[v]) / 2 / n  # mean rank of the ties
        for v in values
    ]


def values(scores: Sequence, weights: Mapping[str, float]) -> list[float]:
    """The `value` of every turn (see the module docstring)."""
    total = [0.0] * len(scores)
    for name, weight in weights.items():
        if not weight:
            continue
        column = [getattr(s, name) for s in scores]
        if name == "current_logprob":
            column = [None if v is None else -v for v in column]
        for i, p in enumerate(percentiles(column)):
            total[i] += weight * p
    return total


def budget_count(budget: int | float, turns: int) -> int:
    """A fraction of `turns` rounded up (at least 1 when there are turns), or the count itself."""
    if isinstance(budget, int):
        return budget
    return min(turns, max(1, math.ceil(budget * turns - 1e-9))) if turns else 0


def select(
    scores: Sequence, settings: SelectSettings, *, seed: int, force: Collection[tuple[str, int]] = ()
) -> Selection:
    """Apply `settings` to the round's `TurnScores` (data order); deterministic for a seed.

    `force`: (example id, message index) of turns to ask whatever the budget says (step 5)."""
    value = values(scores, settings.weights)
    warnings = []
    skip = [settings.skip_verified and s.verified_unchanged for s in scores]
    eligible = [i for i in range(len(scores)) if not skip[i]]
    want = budget_count(settings.budget, len(scores))
    if want > len(eligible):
        if isinstance(settings.budget, int):
            warnings.append(
                f"select.budget {settings.budget} is more than the {len(eligible)} turns to ask: asking them all"
            )
        want = len(eligible)

    def by(score: str) -> list[int]:
        col = [getattr(scores[i], score) for i in eligible]
        return [i for _, i in sorted(zip(col, eligible, strict=True), key=lambda p: _desc(p[0]))]

    strategy = settings.strategy
    if strategy == "all":
        chosen = eligible[:want]
    elif strategy == "random":
        chosen = sorted(random.Random(seed).sample(eligible, want))
    elif strategy == "value":
        chosen = sorted(eligible, key=lambda i: -value[i])[:want]  # stable: ties keep data order
    elif strategy == "ifd_hard":
        chosen = by("ifd_round")[:want]
    else:  # disagreement
        chosen = by("disagreement")[:want]
    if strategy in ("random", "value"):
        chosen = sorted(chosen, key=lambda i: -value[i])
    forced = [i for i, s in enumerate(scores) if (s.example_id, s.message_index) in force]
    chosen = forced + [i for i in chosen if i not in forced]
    order = {i: pos for pos, i in enumerate(chosen)}
    turns = []
    for i, s in enumerate(scores):
        reason = None if i in order else VERIFIED_UNCHANGED if skip[i] else NOT_SELECTED
        turns.append(
            Selected(
                s.example_id,
                s.turn,
                s.message_index,
                i in order,
                reason,
                order.get(i),
                round(value[i], 6),
                CONFLICT_REVIEW if i in forced else None,
            )
        )
    return Selection(turns, warnings)


def _desc(v: float | None) -> tuple[int, float]:
    """Sort key: highest first, missing or NaN scores last (stable, so ties keep data order)."""
    return (1, 0.0) if v is None or math.isnan(v) else (0, -v)


def write_selection(selection: Selection, path: Path) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for t in selection.turns:
            fh.write(json.dumps(asdict(t), sort_keys=True) + "\n")
    return path


def review_turns(decisions: Path) -> set[tuple[str, int]]:
    """(example id, message index) of the turns a finished round left as `conflict_review`."""
    if not decisions.exists():
        return set()
    out = set()
    for line in decisions.read_text(encoding="utf-8").splitlines():
        if line:
            d = json.loads(line)
            if d["choice"] == CONFLICT_REVIEW:
                out.add((d["example_id"], int(d["turn"])))
    return out


def read_selection(path: Path) -> list[Selected] | None:
    """The round's selection, or None for a round pushed before selection existed (every turn asked)."""
    if not path.exists():
        return None
    return [Selected(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
