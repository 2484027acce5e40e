from __future__ import annotations

import pytest

from loop.demo.metrics import rouge_l, token_f1


def test_token_f1_hand_computed() -> None:
    # pred: a b c d ; ref: a b e -> common 2, P=2/4, R=2/3, F1=2PR/(P+R)=4/7
    assert token_f1("a b c d", "A, b; e") == pytest.approx(4 / 7)
    assert token_f1("same words", "same words") == 1.0
    assert token_f1("nothing", "shared") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def test_rouge_l_hand_computed() -> None:
    # LCS("a b c d e", "a c e f") = a c e = 3; P=3/5, R=3/4 -> F=2*.6*.75/1.35
    assert rouge_l("a b c d e", "a c e f") == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert rouge_l("x y", "y x") == pytest.approx(0.5)
    assert rouge_l("", "a") == 0.0
