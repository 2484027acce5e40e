"""The pairwise-evaluation statistics against textbook values and constructed data."""

from __future__ import annotations

import math

import pytest

from loop.evaluation import stats
from loop.evaluation.stats import TIE, A, B, Judgement


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe(x: int, n: int, low: float, high: float) -> None:
    got = stats.wilson_interval(x, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_binomial_test_exact_two_sided() -> None:
    assert stats.binomial_test(7, 10) == pytest.approx(0.34375)  # 2 * P(X >= 7), symmetric
    assert stats.binomial_test(0, 10) == pytest.approx(2 / 1024)
    assert stats.binomial_test(5, 10) == pytest.approx(1.0)
    # asymmetric null: outcomes no likelier than P(X=3)=0.2013 are 0 and 3..10 (1 and 2 are likelier)
    pmf = [math.comb(10, i) * 0.2**i * 0.8 ** (10 - i) for i in range(11)]
    assert stats.binomial_test(3, 10, 0.2) == pytest.approx(pmf[0] + sum(pmf[3:]))
    assert stats.binomial_test(3, 10, 0.2) == pytest.approx(0.4295747, abs=1e-7)
    assert stats.binomial_test(0, 0) == 1.0


def test_cohen_kappa_textbook() -> None:
    # Wikipedia "Cohen's kappa", worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert stats.cohen_kappa(pairs) == pytest.approx(0.4)


def test_fleiss_kappa_textbook() -> None:
    # Fleiss (1971) as worked in Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [[str(c) for c, count in enumerate(row) for _ in range(count)] for row in table]
    assert stats.fleiss_kappa(items) == pytest.approx(0.20993, abs=1e-4)


def test_bradley_terry_recovers_constructed_strengths() -> None:
    true = {"x": 4.0, "y": 2.0, "z": 1.0}  # P(x beats y) = 2/3, etc.
    models = list(true)
    n = 300
    wins = [
        [0.0 if i == j else n * true[a] / (true[a] + true[b]) for j, b in enumerate(models)]
        for i, a in enumerate(models)
    ]
    got = stats.bradley_terry(wins, prior=0)
    logs = [math.log(true[m]) for m in models]
    mean = sum(logs) / len(logs)
    assert got == pytest.approx([x - mean for x in logs], abs=1e-6)


def _judgements(model: str, other: str, wins: int, ties: int, losses: int, start: int = 0) -> list[Judgement]:
    out, q = [], start
    for outcome, count in ((A, wins), (TIE, ties), (B, losses)):
        for _ in range(count):
            out.append(Judgement(f"q{q}", model, other, outcome, "ann", f"r{q}"))
            q += 1
    return out


def test_pair_result_counts_ties_half_with_wilson() -> None:
    js = _judgements("round-1", "base", 6, 2, 2)
    (pair,) = stats.pair_results(js, ["round-1", "base"])
    assert (pair.wins, pair.ties, pair.losses) == (6, 2, 2)
    assert pair.win_rate == pytest.approx(0.7)
    assert (pair.low, pair.high) == pytest.approx(stats.wilson_interval(7, 10))
    (flipped,) = stats.pair_results(js, ["base", "round-1"])
    assert (flipped.wins, flipped.losses, flipped.win_rate) == (2, 6, pytest.approx(0.3))


def test_strengths_bootstrap_is_seeded_and_brackets_the_fit() -> None:
    js = (
        _judgements("a", "b", 30, 5, 10)
        + _judgements("b", "c", 25, 5, 15, 100)
        + _judgements("a", "c", 35, 0, 10, 200)
    )
    one = stats.strengths(js, ["a", "b", "c"], resamples=200, seed=3)
    two = stats.strengths(js, ["a", "b", "c"], resamples=200, seed=3)
    assert one == two
    assert [s.model for s in sorted(one, key=lambda s: -s.strength)] == ["a", "b", "c"]
    for s in one:
        assert s.low <= s.strength <= s.high
    assert sum(s.strength for s in one) == pytest.approx(0, abs=1e-9)


def test_a_model_that_never_wins_gets_a_finite_strength() -> None:
    js = _judgements("a", "b", 10, 0, 0)
    s = stats.strengths(js, ["a", "b"], resamples=100)
    assert all(math.isfinite(x.strength) for x in s) and s[0].strength > s[1].strength


def test_position_bias() -> None:
    js = [Judgement(f"q{i}", "m", "n", A if i < 9 else B) for i in range(10)] + [
        Judgement("t", "m", "n", TIE)
    ]
    bias = stats.position_bias(js)
    assert (bias.first_wins, bias.decisive) == (9, 10)
    assert bias.p_value == pytest.approx(22 / 1024)
    assert bias.significant


def test_agreement_picks_cohen_or_fleiss() -> None:
    two = [
        Judgement("q", "m", "n", o, u, f"r{i}")
        for i, (o, p) in enumerate([(A, A), (B, B), (A, B)])
        for u, o in (("x", o), ("y", p))
    ]
    got = stats.agreement(two)
    assert (got.method, got.records, got.annotators) == ("cohen", 3, 2)
    assert got.kappa == pytest.approx(stats.cohen_kappa([(A, A), (B, B), (A, B)]))
    three = two + [Judgement("q", "m", "n", A, "z", "r0")]
    assert stats.agreement(three).method == "fleiss"
    assert stats.agreement([Judgement("q", "m", "n", A, "x", "r0")]).kappa is None


def test_power_needs_about_200_decisive_comparisons_for_60_40() -> None:
    assert stats.decisive_needed(0.6) == 194
    assert stats.decisive_needed(0.7) < stats.decisive_needed(0.6)
    pairs = stats.pair_results(_judgements("a", "b", 30, 5, 10), ["a", "b"])
    (warning,) = stats.power_warnings(pairs)
    assert "40 decisive" in warning and "194" in warning
    many = stats.pair_results(_judgements("a", "b", 150, 0, 60), ["a", "b"])
    assert stats.power_warnings(many) == []


def test_reference_f1() -> None:
    got = stats.reference_f1({"q1": "a b c", "q2": "x"}, {"q1": "a b c", "q2": "y", "q3": None}, "m")
    assert got is not None and got.questions == 2 and got.mean_f1 == pytest.approx(0.5)
    assert stats.reference_f1({}, {"q": None}, "m") is None
