"""Quality of generated pairs: duplicates out, grounding measured.

- Exact duplicates: the same question after normalisation (lower case, word tokens only).
- Near duplicates: token F1 (`loop.textsim`) of two normalised questions at or above a threshold;
  the first one (in document and chunk order) is kept. Only questions that can reach the threshold
  are compared (prefix filtering; `benchmarks/bench_seed_dedup.py` measures it against comparing
  every pair).
- Grounding: the share of an answer's distinct word tokens that occur in its chunk. Copying or
  paraphrasing close to the passage scores high; an answer made of words the passage never uses is
  flagged (`ungrounded`), and dropped with `--drop-ungrounded`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from loop.textsim import tokens


def normalise(text: str) -> str:
    return " ".join(tokens(text))


def duplicate_indices(questions: Sequence[str], threshold: float) -> set[int]:
    """Indices of questions that repeat an earlier kept one exactly or nearly (token F1 >= threshold).

    Same result as comparing each question with every kept one, without doing so: token F1 of two
    token multisets is the Dice coefficient of their sets of (token, occurrence) items, and a pair at
    or above the threshold shares at least `ceil(t * n / (2 - t))` of a question's n items, so it
    shares an item among each one's rarest `n - that + 1` (prefix filtering, as in similarity joins).
    Only kept questions that share such an item are compared.
    """
    norms = [tokens(q) for q in questions]
    if threshold <= 0:
        return set(range(1, len(questions)))
    freq = Counter(t for toks in norms for t in set(toks))
    index: dict[tuple[str, int], list[int]] = {}
    exact: set[tuple[str, ...]] = set()
    counters: dict[int, Counter] = {}
    dropped: set[int] = set()
    for i, toks in enumerate(norms):
        key = tuple(toks)
        if key in exact:
            dropped.add(i)
            continue
        seen: Counter = Counter()
        items = []
        for t in toks:
            items.append((t, seen[t]))
            seen[t] += 1
        items.sort(key=lambda item: (freq[item[0]], item))
        need = math.ceil(threshold * len(items) / (2 - threshold) - 1e-9)
        prefix = items[: max(0, len(items) - need + 1)]
        candidates = sorted({j for item in prefix for j in index.get(item, ())})
        if any(_f1(seen, counters[j]) >= threshold for j in candidates):
            dropped.add(i)
            continue
        exact.add(key)
        counters[i] = seen
        for item in prefix:
            index.setdefault(item, []).append(i)
    return dropped


def _f1(a: Counter, b: Counter) -> float:
    """`loop.textsim.token_f1` on token counts (both non-empty here)."""
    common = sum((a & b).values())
    if not common:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)


def grounding(answer: str, chunk: str) -> float:
    """Share of the answer's distinct word tokens found in the chunk (1.0 for an answer with none)."""
    words = set(tokens(answer))
    if not words:
        return 1.0
    return len(words & set(tokens(chunk))) / len(words)
