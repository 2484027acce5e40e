"""Near-duplicate removal of seed-data questions: `loop.seed.quality.duplicate_indices` (prefix
filtering) against comparing each question with every kept one (the baseline), on the same
synthetic questions in the same run. Both must drop exactly the same questions; the script checks.

    python benchmarks/bench_seed_dedup.py --questions 1000 3000 --threshold 0.85

Questions are 5-12 words from a 3,000-word vocabulary, a fifth of them near copies (one word changed
or dropped) of an earlier one, the shape of pairs generated from overlapping chunks.
"""

from __future__ import annotations

import argparse
import random
import time

from loop.seed.quality import duplicate_indices, normalise
from loop.textsim import token_f1


def baseline(questions: list[str], threshold: float) -> set[int]:
    kept: list[str] = []
    exact: set[str] = set()
    dropped: set[int] = set()
    for i, q in enumerate(questions):
        norm = normalise(q)
        if norm in exact or any(token_f1(norm, k) >= threshold for k in kept):
            dropped.add(i)
            continue
        exact.add(norm)
        kept.append(norm)
    return dropped


def questions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.2:
            words = rng.choice(out).split()
            words[rng.randrange(len(words))] = rng.choice(vocab) if rng.random() < 0.5 else ""
            out.append(" ".join(w for w in words if w))
        else:
            out.append("What " + " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 12))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--threshold", type=float, default=0.85)
    args = parser.parse_args()
    print("| questions | dropped | baseline s | prefix filtering s | speed-up |")
    print("|---|---|---|---|---|")
    for n in args.questions:
        qs = questions(n)
        t0 = time.perf_counter()
        expected = baseline(qs, args.threshold)
        t1 = time.perf_counter()
        got = duplicate_indices(qs, args.threshold)
        t2 = time.perf_counter()
        assert got == expected, "prefix filtering must drop exactly what the baseline drops"
        print(f"| {n} | {len(got)} | {t1 - t0:.2f} | {t2 - t1:.3f} | {(t1 - t0) / max(t2 - t1, 1e-9):.0f}x |")


if __name__ == "__main__":
    main()
