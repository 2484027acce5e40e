"""The statistics of a pairwise evaluation. Pure functions of the judgements: no I/O, no libraries.

A judgement is one annotator's verdict on one record: the same question answered by two models, shown
as Answer A (first position) and Answer B. Everything here counts ties as half a win:

- per pair: wins / ties / losses and the win rate `(wins + ties / 2) / n` with a 95% Wilson score
  interval (Wilson 1927; Newcombe 1998 compares it with the alternatives);
- Bradley–Terry strengths (`P(i beats j) = p_i / (p_i + p_j)`), fitted by Hunter's (2004) MM
  algorithm, reported as centred log-strengths, with 95% percentile intervals from a bootstrap that
  resamples questions (all judgements of a question stay together: they are not independent);
- position bias: among decisive judgements, how often Answer A won, with an exact two-sided binomial
  test against 1/2 (the "minlike" p-value, as `scipy.stats.binomtest`);
- agreement between annotators on the records they share: Cohen's kappa for two, Fleiss' kappa
  (variable raters per record) for more;
- power: decisive comparisons needed to tell a 60/40 preference from a coin flip with a two-sided 5%
  test and 80% power (normal approximation: ≈194), so a report can say when it cannot separate models.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

A, B, TIE = "a", "b", "tie"
OUTCOMES = (A, B, TIE)
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Judgement:
    """One annotator's verdict on one record (question, the model shown as A, the model shown as B)."""

    question_id: str
    model_a: str
    model_b: str
    outcome: str  # "a" | "b" | "tie"
    annotator: str = ""
    record_id: str = ""

    def winner(self) -> str | None:
        return {A: self.model_a, B: self.model_b}.get(self.outcome)

    def score_for(self, model: str) -> float:
        """1 for a win of `model`, 0.5 for a tie, 0 for a loss."""
        if self.outcome == TIE:
            return 0.5
        return 1.0 if self.winner() == model else 0.0


# --------------------------------------------------------------------------- win rates


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes / n` (a tie counts as half a success)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairResult:
    """`model` against `other`: its wins, ties, losses and win rate (ties half) with a 95% interval."""

    model: str
    other: str
    wins: int
    ties: int
    losses: int
    win_rate: float
    low: float
    high: float

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def decisive(self) -> int:
        return self.wins + self.losses


def pair_result(judgements: Iterable[Judgement], model: str, other: str) -> PairResult:
    wins = ties = losses = 0
    for j in judgements:
        if {j.model_a, j.model_b} != {model, other}:
            continue
        if j.outcome == TIE:
            ties += 1
        elif j.winner() == model:
            wins += 1
        else:
            losses += 1
    n = wins + ties + losses
    score = wins + ties / 2
    low, high = wilson_interval(score, n)
    return PairResult(model, other, wins, ties, losses, score / n if n else float("nan"), low, high)


def pair_results(judgements: Sequence[Judgement], models: Sequence[str]) -> list[PairResult]:
    """Every compared pair, in the order of `models` (the earlier model is `model`)."""
    compared = {frozenset((j.model_a, j.model_b)) for j in judgements}
    return [
        pair_result(judgements, m, o)
        for i, m in enumerate(models)
        for o in models[i + 1 :]
        if frozenset((m, o)) in compared
    ]


# --------------------------------------------------------------------------- Bradley–Terry


def win_matrix(judgements: Iterable[Judgement], models: Sequence[str]) -> list[list[float]]:
    """`w[i][j]`: how often model i beat model j, a tie counting half for each."""
    index = {m: i for i, m in enumerate(models)}
    w = [[0.0] * len(models) for _ in models]
    for j in judgements:
        a, b = index[j.model_a], index[j.model_b]
        w[a][b] += j.score_for(j.model_a)
        w[b][a] += j.score_for(j.model_b)
    return w


def bradley_terry(
    wins: Sequence[Sequence[float]], *, prior: float = 0.5, iterations: int = 10_000, tol: float = 1e-10
) -> list[float]:
    """Bradley–Terry log-strengths (centred: mean 0) from a win matrix, by Hunter's MM algorithm.

    `prior` adds that many virtual tied comparisons to every compared pair, so a model that never won
    (or never lost) gets a finite strength; 0 gives the plain maximum-likelihood fit.
    """
    k = len(wins)
    w = [[float(wins[i][j]) for j in range(k)] for i in range(k)]
    for i in range(k):
        for j in range(k):
            if i != j and (wins[i][j] + wins[j][i]) > 0:
                w[i][j] += prior / 2
    n = [[w[i][j] + w[j][i] for j in range(k)] for i in range(k)]
    total = [sum(row) for row in w]
    p = [1.0] * k
    for _ in range(iterations):
        new = []
        for i in range(k):
            denom = sum(n[i][j] / (p[i] + p[j]) for j in range(k) if j != i and n[i][j] > 0)
            new.append(total[i] / denom if denom > 0 else p[i])
        new = [max(x, 1e-300) for x in new]
        g = math.exp(sum(math.log(x) for x in new) / k)
        new = [x / g for x in new]
        change = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, p, strict=True))
        p = new
        if change < tol:
            break
    logs = [math.log(x) for x in p]
    mean = sum(logs) / k
    return [x - mean for x in logs]


@dataclass(frozen=True)
class Strength:
    model: str
    strength: float  # centred log-strength: P(i beats j) = 1 / (1 + exp(s_j - s_i))
    low: float
    high: float


def strengths(
    judgements: Sequence[Judgement],
    models: Sequence[str],
    *,
    resamples: int = 1000,
    seed: int = 0,
    prior: float = 0.5,
) -> list[Strength]:
    """Bradley–Terry strengths with 95% intervals from a bootstrap over questions (seeded)."""
    point = bradley_terry(win_matrix(judgements, models), prior=prior)
    by_question: dict[str, list[Judgement]] = defaultdict(list)
    for j in judgements:
        by_question[j.question_id].append(j)
    ids = sorted(by_question)
    rng = random.Random(seed)
    draws: list[list[float]] = [[] for _ in models]
    for _ in range(resamples if ids else 0):
        sample = [j for _ in ids for j in by_question[ids[rng.randrange(len(ids))]]]
        for i, s in enumerate(bradley_terry(win_matrix(sample, models), prior=prior, tol=1e-8)):
            draws[i].append(s)
    out = []
    for i, m in enumerate(models):
        low, high = (
            (_percentile(draws[i], 0.025), _percentile(draws[i], 0.975)) if draws[i] else (point[i],) * 2
        )
        out.append(Strength(m, point[i], low, high))
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --------------------------------------------------------------------------- position bias


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: the probability of outcomes no likelier than `k` (scipy's rule)."""
    if n == 0:
        return 1.0
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    observed = pmf[k] * (1 + 1e-7)
    return min(1.0, sum(x for x in pmf if x <= observed))


@dataclass(frozen=True)
class PositionBias:
    first_wins: int  # decisive judgements won by Answer A
    decisive: int
    rate: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def position_bias(judgements: Iterable[Judgement]) -> PositionBias:
    decisive = [j for j in judgements if j.outcome != TIE]
    first = sum(j.outcome == A for j in decisive)
    n = len(decisive)
    return PositionBias(first, n, first / n if n else float("nan"), binomial_test(first, n))


# --------------------------------------------------------------------------- agreement


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float:
    """Cohen's kappa of two raters' labels on the same items."""
    n = len(pairs)
    if n == 0:
        return float("nan")
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float:
    """Fleiss' kappa of items each rated by two or more raters (the count may vary per item)."""
    items = [list(i) for i in items if len(i) >= 2]
    if not items:
        return float("nan")
    per_item = []
    totals: Counter[str] = Counter()
    for labels in items:
        counts = Counter(labels)
        totals.update(counts)
        m = len(labels)
        per_item.append((sum(c * c for c in counts.values()) - m) / (m * (m - 1)))
    observed = sum(per_item) / len(per_item)
    all_ratings = sum(totals.values())
    expected = sum((c / all_ratings) ** 2 for c in totals.values())
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class Agreement:
    method: str  # "cohen" | "fleiss" | "none"
    kappa: float | None
    records: int  # records judged by two or more annotators
    annotators: int


def agreement(judgements: Iterable[Judgement]) -> Agreement:
    """Kappa over the records two or more annotators judged: Cohen's for two annotators, else Fleiss'."""
    by_record: dict[str, dict[str, str]] = defaultdict(dict)
    for j in judgements:
        by_record[j.record_id or f"{j.question_id}:{j.model_a}:{j.model_b}"][j.annotator] = j.outcome
    shared = [r for r in by_record.values() if len(r) >= 2]
    names = sorted({a for r in by_record.values() for a in r})
    if not shared:
        return Agreement("none", None, 0, len(names))
    if len(names) == 2:
        first, second = names
        return Agreement("cohen", cohen_kappa([(r[first], r[second]) for r in shared]), len(shared), 2)
    return Agreement("fleiss", fleiss_kappa([list(r.values()) for r in shared]), len(shared), len(names))


# --------------------------------------------------------------------------- power


def decisive_needed(p1: float = 0.6, *, alpha: float = 0.05, power: float = 0.8, p0: float = 0.5) -> int:
    """Decisive comparisons a two-sided binomial test at `alpha` needs to detect a true preference of
    `p1` (against `p0`) with probability `power` (normal approximation)."""
    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    root = (z_a * math.sqrt(p0 * (1 - p0)) + z_b * math.sqrt(p1 * (1 - p1))) / abs(p1 - p0)
    return math.ceil(root * root)


def power_warnings(pairs: Sequence[PairResult], p1: float = 0.6) -> list[str]:
    """One line per pair whose decisive comparisons are too few to separate a `p1` preference."""
    needed = decisive_needed(p1)
    share = f"{round(p1 * 100)}/{round((1 - p1) * 100)}"
    return [
        f"{p.model} vs {p.other}: {p.decisive} decisive comparison(s); about {needed} are needed to tell a "
        f"{share} preference from a coin flip (95% confidence, 80% power): treat this result as a hint"
        for p in pairs
        if p.decisive < needed
    ]


# --------------------------------------------------------------------------- reference answers


@dataclass(frozen=True)
class ReferenceF1:
    model: str
    mean_f1: float
    questions: int
    per_question: dict[str, float] = field(default_factory=dict, repr=False)


def reference_f1(
    answers: dict[str, str], references: dict[str, str | None], model: str
) -> ReferenceF1 | None:
    """Mean token-F1 of a model's answers against the questions' reference answers (those that have one)."""
    from loop.textsim import token_f1

    scores = {q: token_f1(answers.get(q, ""), ref) for q, ref in references.items() if ref}
    if not scores:
        return None
    return ReferenceF1(model, sum(scores.values()) / len(scores), len(scores), scores)
