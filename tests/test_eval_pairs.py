"""The pairing schedule, the blind record plan and the report, without a server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from loop.evaluation.pairs import plan_pairs, schedule
from loop.evaluation.questions import EvalQuestion
from loop.evaluation.report import build_report, read_report, write_report
from loop.evaluation.stats import TIE, A, B, Judgement


def test_all_pairs_up_to_four_models() -> None:
    assert schedule(["base", "round-1"]) == [("base", "round-1")]
    assert len(schedule(["m1", "m2", "m3", "m4"])) == 6


@pytest.mark.parametrize("k", [5, 6, 7, 9])
def test_balanced_schedule_beyond_four(k: int) -> None:
    models = [f"m{i}" for i in range(k)]
    pairs = schedule(models)
    assert len({frozenset(p) for p in pairs}) == len(pairs)
    appearances = Counter(m for p in pairs for m in p)
    assert len(set(appearances.values())) == 1 and set(appearances) == set(models)
    assert len(pairs) <= 2 * k
    # connected: Bradley–Terry can place every model
    reached, frontier = {models[0]}, [models[0]]
    while frontier:
        m = frontier.pop()
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                if x == m and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    assert reached == set(models)


def _questions(n: int) -> list[EvalQuestion]:
    return [
        EvalQuestion(f"q{i}", [{"role": "user", "content": f"question {i}"}], f"ref {i}") for i in range(n)
    ]


def test_plan_is_blind_seeded_and_keyed() -> None:
    qs = _questions(200)
    models = ["base", "round-1", "round-2"]
    answers = {m: {q.id: f"{m} says {q.id}" for q in qs} for m in models}
    one = plan_pairs(qs, answers, models, run="r", name="n", seed=0, key="secret")
    assert plan_pairs(qs, answers, models, run="r", name="n", seed=0, key="secret") == one
    assert len(one) == 600
    for rec in one:
        assert not any(m in rec.record_id for m in models)
        assert rec.answer_a == answers[rec.model_a][rec.question_id]
    first = Counter(r.model_a for r in one if {r.model_a, r.model_b} == {"base", "round-1"})
    assert 70 <= first["base"] <= 130  # positions shuffled per record, about half each
    other_key = plan_pairs(qs, answers, models, run="r", name="n", seed=0, key="other")
    assert [r.model_a for r in other_key] != [r.model_a for r in one]
    assert {r.record_id for r in other_key}.isdisjoint({r.record_id for r in one})


def test_report_files_and_status_lines(tmp_path: Path) -> None:
    qs = _questions(6)
    answers = {"base": {q.id: "nothing" for q in qs}, "round-1": {q.id: q.reference for q in qs}}
    js = [Judgement(q.id, "round-1", "base", A, "ann", q.id) for q in qs[:4]]
    js += [
        Judgement("q4", "base", "round-1", B, "ann", "q4"),
        Judgement("q5", "base", "round-1", TIE, "ann", "q5"),
    ]
    report = build_report("x", ["base", "round-1"], qs, 6, js, answers, bootstrap=100, seed=0, simulated=True)
    (pair,) = report.pairs
    assert (pair["model"], pair["wins"], pair["ties"], pair["losses"]) == ("round-1", 5, 1, 0)
    assert report.reference_f1 == {"base": 0.0, "round-1": 1.0}
    paths = [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"]
    write_report(report, *paths)
    assert read_report(paths[0]) == report
    assert "SIMULATION" in paths[1].read_text()
    assert paths[2].read_bytes()[:4] == b"\x89PNG"
    base_line, round_line = report.status_lines()
    assert round_line.startswith("round-1: strength +") and "vs base 92%" in round_line
    assert "vs base" not in base_line
    # a report with no judgements yet is still valid JSON (NaN written as null)
    empty = build_report("y", ["base", "round-1"], qs, 6, [], answers, bootstrap=100, seed=0)
    write_report(empty, *paths)
    assert json.loads(paths[0].read_text())["position_bias"]["rate"] is None


def test_record_body_names_no_model_and_shows_a_conversation_when_multi_turn() -> None:
    from loop.evaluation import judging
    from loop.evaluation.pairs import PairRecord

    single = PairRecord(
        "r/eval-n/abc", "q1", [{"role": "user", "content": "Why?"}], "base", "round-2", "x", ""
    )
    multi = PairRecord(
        "r/eval-n/def",
        "q2",
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "And?"},
        ],
        "round-2",
        "base",
        "y",
        "z",
    )
    assert judging.is_multi_turn([single, multi]) and not judging.is_multi_turn([single])
    body = judging.record_body(single, multi_turn=False)
    assert body["fields"] == {"question": "Why?", "answer_a": "x", "answer_b": "(empty answer)"}
    assert body["metadata"] == {"question_id": "q1"} and body["external_id"] == "r/eval-n/abc"
    conv = judging.record_body(multi, multi_turn=True)["fields"]["conversation"]
    assert [m["role"] for m in conv] == ["user", "assistant", "user"]
    assert "base" not in json.dumps([body, conv]) and "round-2" not in json.dumps([body, conv])
