"""Replay (`train.replay`, Self-Evolution): earlier versions of the examples trained again beside the round's data.

Pure functions over `Example`s and IFD numbers; the train phase loads the scorer and calls them.

- The pool for round n: each earlier round's input (round 1's `input.jsonl`, round k's = round k-1's
  `output.parquet`), version by version. A version whose text (roles and contents, whitespace aside)
  equals this round's version of the same example is dropped: replaying it trains the same text
  twice. Equal earlier versions of one example count once, as the latest round's. Examples no longer
  in this round's input are dropped. Round 1 has no pool, so replay does nothing there.
- IFD of a version (`loop/phases/score.py`): the mean over its assistant turns under the scorer
  (`round`: the previous round's model, whose `scores.parquet` already holds it for the previous
  round's versions; `base`; or a scorer model's path). Turns without an IFD are left out of the mean;
  a version with none has IFD None and sorts last in every order.
- The choice: `hard` the k highest IFD, `easy` the k lowest, `even` k versions evenly spaced over the
  pool sorted by IFD (the i-th of k at position floor((i + 1/2) n / k)), `random` a sample seeded by
  run.seed + round, `all` the whole pool. `fraction` of the pool is rounded up; a `k` above the pool
  size replays the whole pool, with a warning. Ties keep pool order (earlier rounds first, then data
  order), so the choice is deterministic.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from loop.data import Example
from loop.fsutil import atomic_path

NEEDS_IFD = ("hard", "easy", "even")


@dataclass(frozen=True)
class PoolEntry:
    """One earlier version of an example that differs from this round's."""

    example: Example
    source_round: int
    """The round whose input this version was."""
    ifd: float | None = None


@dataclass(frozen=True)
class Replay:
    chosen: list[PoolEntry]
    pool: int
    warnings: list[str]


def _text(ex: Example) -> list[tuple[str, str]]:
    return [(m["role"], " ".join(m["content"].split())) for m in ex.messages]


def build_pool(earlier: Sequence[tuple[int, Sequence[Example]]], current: Sequence[Example]) -> list[PoolEntry]:
    """The replay pool from `(round, that round's input)` pairs (any order) and this round's input."""
    now = {ex.id: _text(ex) for ex in current}
    latest: dict[tuple[str, str], tuple[int, Example]] = {}
    for round_n, examples in sorted(earlier, key=lambda p: p[0]):
        for ex in examples:
            text = _text(ex)
            if ex.id not in now or text == now[ex.id]:
                continue
            key = (ex.id, json.dumps(text))
            latest.pop(key, None)  # a later equal version replaces it, in its own round's data order
            latest[key] = (round_n, ex)
    entries = sorted(latest.values(), key=lambda p: p[0])  # stable: data order within a round
    return [PoolEntry(ex, round_n) for round_n, ex in entries]


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
        return pool, [f"train.replay.k {k} is more than the {pool} earlier versions in the pool: replaying them all"]
    return k, []


def choose(
    pool: Sequence[PoolEntry], mode: str, *, k: int | None = None, fraction: float | None = None, seed: int = 0
) -> Replay:
    """The versions `mode` replays from `pool` (see the module docstring)."""
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
