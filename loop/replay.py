"""Replay (`train.replay`, Self-Evolution): what a later round trains on besides what changed.

A round that continues from the previous round's model (strategy continue or merge_and_stack) starts
from a model that has already been trained on every answer the labelers kept. Replay decides how much
of that unchanged data it trains on again, beside the examples that changed (always trained):

- The pool for round n > 1: this round's examples whose text (roles and contents, whitespace aside)
  equals their version in round n-1's input, i.e. what round n-1's model was trained on. Changed and
  new examples are not in the pool; they are always trained. Round 1, and rounds that start again from
  the base model (strategy from_base), train on everything.
- IFD of a pooled example (`loop/phases/score.py`): the mean over its assistant turns under the scorer
  (`round`: the previous round's model, whose `scores.parquet` already holds it, since the pooled text
  is exactly what that round scored; `base`; or a scorer model's path). Turns without an IFD are left
  out of the mean; an example with none has IFD None and sorts last in every order.
- The choice: `all` the whole pool (train on everything: the default, and the behaviour before
  replay existed), `none` nothing (train on the changed examples only), `hard` the k highest IFD
  (the ones the question helps least), `easy` the k lowest, `even` k evenly spaced over the pool sorted
  by IFD (the i-th of k at position floor((i + 1/2) n / k)), `random` a sample seeded by run.seed +
  round. `fraction` of the pool is rounded up; a `k` above the pool size replays the whole pool, with a
  warning. Ties keep data order, so the choice is deterministic.
- A round where nothing changed and the choice is empty trains on the whole pool instead (a trainer
  needs examples), and says so.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loop.data import Example
from loop.fsutil import atomic_path

NEEDS_IFD = ("hard", "easy", "even")


@dataclass(frozen=True)
class PoolEntry:
    """One example of this round that the previous round trained on as it is."""

    example: Example
    source_round: int
    """The round that trained it last (n - 1)."""
    ifd: float | None = None


@dataclass(frozen=True)
class Replay:
    chosen: list[PoolEntry]
    pool: int
    warnings: list[str]
    changed: list[Example] = field(default_factory=list)
    """This round's examples that differ from (or are not in) the previous round's input."""

    def training_examples(self) -> list[Example]:
        """Changed examples first, then the replayed ones (the trainer shuffles them)."""
        return [*self.changed, *(e.example for e in self.chosen)]


def _text(ex: Example) -> list[tuple[str, str]]:
    return [(m["role"], " ".join(m["content"].split())) for m in ex.messages]


def build_pool(
    previous: Sequence[Example], current: Sequence[Example], previous_round: int
) -> tuple[list[Example], list[PoolEntry]]:
    """(changed examples, pool): this round's examples split by whether the previous round's input
    held the same text (whitespace aside)."""
    before = {ex.id: _text(ex) for ex in previous}
    changed, pool = [], []
    for ex in current:
        if before.get(ex.id) == _text(ex):
            pool.append(PoolEntry(ex, previous_round))
        else:
            changed.append(ex)
    return changed, pool


def example_ifd(ex: Example, turn_ifd: Mapping[tuple[str, int], float | None]) -> float | None:
    """Mean IFD of the example's assistant turns (`(example id, message index) -> IFD`)."""
    values = [turn_ifd.get((ex.id, i)) for i in ex.assistant_turns()]
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


def count(pool: int, k: int | None, fraction: float | None) -> tuple[int, list[str]]:
    """How many to replay from a pool of `pool`, and a warning when `k` had to be clamped."""
    if fraction is not None:
        return (min(pool, max(1, math.ceil(fraction * pool - 1e-9))) if pool else 0), []
    if k is None:
        return pool, []
    if k > pool:
        return pool, [f"train.replay.k {k} is more than the {pool} unchanged examples in the pool: replaying them all"]
    return k, []


def choose(
    pool: Sequence[PoolEntry], mode: str, *, k: int | None = None, fraction: float | None = None, seed: int = 0
) -> Replay:
    """The pooled examples `mode` replays (see the module docstring)."""
    if mode == "none" or not pool:
        return Replay([], len(pool), [])
    n, warnings = count(len(pool), None if mode == "all" else k, None if mode == "all" else fraction)
    index = list(range(len(pool)))
    if mode == "all":
        picked = index
    elif mode == "random":
        picked = sorted(random.Random(seed).sample(index, n))
    else:
        ifd = [e.ifd for e in pool]
        missing = [i for i in index if ifd[i] is None]
        known = [i for i in index if ifd[i] is not None]
        if mode == "hard":
            picked = (sorted(known, key=lambda i: -ifd[i]) + missing)[:n]  # type: ignore[operator]
        elif mode == "easy":
            picked = (sorted(known, key=lambda i: ifd[i]) + missing)[:n]  # type: ignore[arg-type]
        elif mode == "even":
            ordered = sorted(known, key=lambda i: ifd[i]) + missing  # type: ignore[arg-type]
            picked = [ordered[math.floor((j + 0.5) * len(ordered) / n)] for j in range(n)] if n else []
        else:
            raise ValueError(f"unknown replay mode {mode!r}")
    return Replay([pool[i] for i in picked], len(pool), warnings)


def write_replay(replay: Replay, path: Path) -> Path:
    """`replay.jsonl`: example id, source round and IFD of every replayed version, in replay order."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for e in replay.chosen:
            fh.write(json.dumps({"example_id": e.example.id, "source_round": e.source_round, "ifd": e.ifd}) + "\n")
    return path


def read_replay(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
