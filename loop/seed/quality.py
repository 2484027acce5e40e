"""Quality of generated pairs: duplicates out, grounding measured.

- Exact duplicates: the same question after normalisation (lower case, word tokens only).
- Near duplicates: token F1 (`loop.textsim`) of two normalised questions at or above a threshold;
  the first one (in document and chunk order) is kept. Pairwise, so O(n^2) in questions: fine for
  tens of thousands of pairs, a job for MinHash beyond.
- Grounding: the share of an answer's distinct word tokens that occur in its chunk. Copying or
  paraphrasing close to the passage scores high; an answer made of words the passage never uses is
  flagged (`ungrounded`), and dropped with `--drop-ungrounded`.
"""

from __future__ import annotations

from collections.abc import Sequence

from loop.textsim import token_f1, tokens


def normalise(text: str) -> str:
    return " ".join(tokens(text))


def duplicate_indices(questions: Sequence[str], threshold: float) -> set[int]:
    """Indices of questions that repeat an earlier one exactly or nearly (token F1 >= threshold)."""
    kept: list[str] = []
    exact: set[str] = set()
    dropped: set[int] = set()
    for i, question in enumerate(questions):
        norm = normalise(question)
        if norm in exact or any(token_f1(norm, k) >= threshold for k in kept):
            dropped.add(i)
            continue
        exact.add(norm)
        kept.append(norm)
    return dropped


def grounding(answer: str, chunk: str) -> float:
    """Share of the answer's distinct word tokens found in the chunk (1.0 for an answer with none)."""
    words = set(tokens(answer))
    if not words:
        return 1.0
    return len(words & set(tokens(chunk))) / len(words)
