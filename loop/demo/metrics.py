"""Answer-agreement metrics for the demo report: token F1 (SQuAD-style, from
`loop.textsim`) and ROUGE-L F-measure.

Small and dependency-free on purpose: the demo measures agreement with reference answers, and the
simulated labelers rank candidates with the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from loop.textsim import token_f1, tokens

__all__ = ["mean", "rouge_l", "token_f1", "tokens"]  # token F1 lives in the core (`loop.textsim`)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = _lcs(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
