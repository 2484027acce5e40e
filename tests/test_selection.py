"""Selection (`loop.selection`): strategies, budgets, verified skips, and auto_kept through aggregate."""

from __future__ import annotations

import json

import pytest

from loop.config import SelectSettings
from loop.data import Example, to_rows
from loop.phases.aggregate import Decision, apply_decisions, auto_kept_decisions
from loop.phases.score import TurnScores
from loop.selection import budget_count, percentiles, read_selection, select, values, write_selection

# Five single-turn examples; e0 is easy and settled, e4 hard and disputed.
SCORES = [
    TurnScores("e0", 0, 1, ifd_round=0.2, current_logprob=-0.1, disagreement=0.0, verified_unchanged=True),
    TurnScores("e1", 0, 1, ifd_round=0.9, current_logprob=-2.0, disagreement=0.1),
    TurnScores("e2", 0, 1, ifd_round=0.5, current_logprob=-1.0, disagreement=0.9),
    TurnScores("e3", 0, 1, ifd_round=None, current_logprob=-0.5, disagreement=0.5),
    TurnScores("e4", 0, 1, ifd_round=1.3, current_logprob=-3.0, disagreement=0.8, verified_unchanged=True),
]


def asked(settings: SelectSettings, seed: int = 0) -> list[str]:
    return [t.example_id for t in select(SCORES, settings, seed=seed).asked()]


def test_percentiles_and_values() -> None:
    assert percentiles([3.0, 1.0, 2.0, None]) == [1.0, 0.0, 0.5, 0.5]
    assert percentiles([1.0, 1.0, 2.0]) == [0.25, 0.25, 1.0], "ties share their mean rank"
    assert percentiles([5.0, None]) == [0.5, 0.5], "one defined value says nothing"
    # current_logprob is reversed: the least likely current answer (e4, -3.0) is worth most.
    assert values(SCORES, {"current_logprob": 1.0}) == [0.0, 0.75, 0.5, 0.25, 1.0]
    v = values(SCORES, {"ifd_round": 1.0, "disagreement": 2.0})
    # e2: ifd 0.5 ranks 1 of 0..3 among the defined (1/3); disagreement 0.9 is the highest (1.0).
    assert v[2] == pytest.approx(1 / 3 + 2 * 1.0)
    assert v[3] == pytest.approx(0.5 + 2 * 0.5), "a missing score counts 0.5"


def test_budget_counts() -> None:
    assert budget_count(1.0, 7) == 7 and budget_count(0.5, 7) == 4 and budget_count(0.01, 7) == 1
    assert budget_count(0.3, 10) == 3, "no float noise: 0.3 * 10 is 3, not 4"
    assert budget_count(3, 7) == 3 and budget_count(0.5, 0) == 0


def test_all_is_todays_behaviour() -> None:
    chosen = select(SCORES, SelectSettings(), seed=0)
    assert [t.example_id for t in chosen.asked()] == ["e0", "e1", "e2", "e3", "e4"]
    assert chosen.counts() == {"selected": 5, "not_selected": 0, "verified_unchanged": 0, "conflict_review": 0}
    assert asked(SelectSettings(budget=2)) == ["e0", "e1"], "a count keeps data order"


def test_value_picks_and_orders_by_the_weighted_score() -> None:
    s = SelectSettings(strategy="value", budget=3, weights={"ifd_round": 1, "disagreement": 1})
    v = values(SCORES, s.weights)
    expected = sorted(range(5), key=lambda i: -v[i])[:3]
    assert asked(s) == [f"e{i}" for i in expected]
    assert asked(s)[0] == "e4" and "e0" not in asked(s)
    order = [t.order for t in select(SCORES, s, seed=0).asked()]
    assert order == [0, 1, 2]


def test_ifd_hard_and_disagreement_rank_by_their_score() -> None:
    assert asked(SelectSettings(strategy="ifd_hard", budget=0.4)) == ["e4", "e1"]
    assert asked(SelectSettings(strategy="ifd_hard", budget=5)) == ["e4", "e1", "e2", "e0", "e3"], "None last"
    assert asked(SelectSettings(strategy="disagreement", budget=2)) == ["e2", "e4"]


def test_random_is_deterministic_by_seed_and_ordered_by_value() -> None:
    s = SelectSettings(strategy="random", budget=3)
    runs = {tuple(asked(s, seed)) for seed in range(20)}
    assert len(runs) > 1, "different seeds pick different turns"
    assert asked(s, 7) == asked(s, 7)
    v = dict(zip("01234", values(SCORES, s.weights), strict=True))
    picked = asked(s, 7)
    assert [v[e[1]] for e in picked] == sorted((v[e[1]] for e in picked), reverse=True)


def test_skip_verified_never_asks_a_verified_answer_and_says_why() -> None:
    s = SelectSettings(strategy="ifd_hard", budget=2, skip_verified=True)
    chosen = select(SCORES, s, seed=0)
    assert [t.example_id for t in chosen.asked()] == ["e1", "e2"], "e4 is hardest but verified"
    reasons = {t.example_id: t.reason for t in chosen.turns}
    assert reasons == {
        "e0": "verified_unchanged",
        "e1": None,
        "e2": None,
        "e3": "not_selected",
        "e4": "verified_unchanged",
    }
    assert chosen.counts() == {"selected": 2, "not_selected": 1, "verified_unchanged": 2, "conflict_review": 0}


def test_a_count_above_the_turns_left_asks_them_all_with_a_warning() -> None:
    chosen = select(SCORES, SelectSettings(budget=50, skip_verified=True), seed=0)
    assert [t.example_id for t in chosen.asked()] == ["e1", "e2", "e3"]
    assert chosen.warnings == ["select.budget 50 is more than the 3 turns to ask: asking them all"]
    assert select(SCORES, SelectSettings(budget=1.0, skip_verified=True), seed=0).warnings == []


def test_selection_round_trips(tmp_path) -> None:
    chosen = select(SCORES, SelectSettings(strategy="value", budget=2), seed=0)
    path = write_selection(chosen, tmp_path / "selection.jsonl")
    assert read_selection(path) == chosen.turns
    assert read_selection(tmp_path / "none.jsonl") is None


def test_auto_kept_turns_keep_their_answer_with_the_reason_in_the_dataset() -> None:
    examples = [
        Example(
            "mt",
            [
                {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A2"},
            ],
        ),
        Example("st", [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]),
    ]
    scores = [
        TurnScores("mt", 0, 1, disagreement=0.9),
        TurnScores("mt", 1, 3, disagreement=0.1, verified_unchanged=True),
        TurnScores("st", 0, 1, disagreement=0.2),
    ]
    chosen = select(scores, SelectSettings(strategy="disagreement", budget=1, skip_verified=True), seed=0)
    kept = auto_kept_decisions(chosen.turns, examples, 2, "run")
    assert [(d.example_id, d.turn, d.choice, d.reason, d.answer) for d in kept] == [
        ("mt", 3, "auto_kept", "verified_unchanged", "A2"),
        ("st", 1, "auto_kept", "not_selected", "A"),
    ]
    assert kept[0].record_id == "run/r2/mt/t1" and not kept[0].completed
    labeled = Decision(
        "run/r2/mt/t0", "mt", 1, "Better A1", "model", "answer_2", {"t": 1.0}, 2, 1.0, False, {}
    )
    rows = apply_decisions(to_rows(examples), [labeled, *kept], 2)
    mt, st = rows
    assert [m["content"] for m in mt["messages"]] == ["Q1", "Better A1", "Q2", "A2"]
    assert [(t["choice"], t["reason"]) for t in mt["turns"]] == [
        ("model", None),
        ("auto_kept", "verified_unchanged"),
    ]
    assert mt["choice"] == "model", "a labeler's decision is the row's strongest choice"
    assert st["messages"][1]["content"] == "A" and st["choice"] == "auto_kept"
    assert st["turns"][0]["reason"] == "not_selected" and st["annotator_count"] == 0


def test_the_card_lineage_shows_asked_and_auto_kept_per_round() -> None:
    import datasets

    from loop.revisions import RoundStats, read_lineage, render_lineage

    ds = datasets.Dataset.from_list(
        [{"id": str(i), "choice": c} for i, c in enumerate(["original", "model", "auto_kept", "auto_kept"])]
    )
    selection = {"selected": 2, "not_selected": 1, "verified_unchanged": 1}
    r2 = RoundStats.from_dataset(ds, 2, selection=selection)
    assert r2.choices == {"original": 1, "model": 1, "edited": 0, "auto_kept": 2}
    assert r2.changed == 1, "an auto-kept answer is not a change"
    text = render_lineage([RoundStats(1, 4, choices={"original": 4}), r2], None)
    head, _, first, second = [line for line in text.splitlines() if line.startswith("|")][:4]
    cols = [c.strip() for c in head.split("|")[1:-1]]
    assert "chose auto_kept" in cols and "asked / auto-kept / verified" in cols
    at = cols.index("asked / auto-kept / verified")
    assert second.split("|")[1:-1][at].strip() == "2 / 2 / 1"
    assert first.split("|")[1:-1][at].strip() == "–", "a round before selection has no count"
    assert read_lineage(text)[1].selection == selection


def test_a_conflict_left_for_review_is_asked_again_first_whatever_the_budget(tmp_path) -> None:
    from dataclasses import asdict

    from loop.phases.aggregate import ConflictRule, RecordCandidates, Response, aggregate_round
    from loop.selection import review_turns

    # Round 1: alice and bob put different candidates first on e3's turn: review keeps the answer.
    rec = RecordCandidates("run/r1/e3/t0", "e3", 1, {"a": "A", "b": "B"}, "A", "a")
    responses = [Response("alice", (("a", 1), ("b", 2))), Response("bob", (("b", 1), ("a", 2)))]
    (d,) = aggregate_round(1, [rec], {rec.record_id: responses}, conflict=ConflictRule(mode="review")).decisions
    assert (d.choice, d.reason) == ("conflict_review", "low_agreement+top_choices_differ")
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text(json.dumps(asdict(d)) + "\n")
    force = review_turns(decisions)
    assert force == {("e3", 1)} and review_turns(tmp_path / "missing.jsonl") == set()
    # Round 2: e3 is asked first, on top of a budget of 2 and although ifd_hard ranks it last.
    chosen = select(SCORES, SelectSettings(strategy="ifd_hard", budget=2), seed=0, force=force)
    assert [t.example_id for t in chosen.asked()] == ["e3", "e4", "e1"]
    assert [t.forced for t in chosen.asked()] == ["conflict_review", None, None]
    assert chosen.counts()["conflict_review"] == 1 and chosen.counts()["selected"] == 3
    path = write_selection(chosen, tmp_path / "selection.jsonl")
    assert read_selection(path) == chosen.turns


def test_the_card_lineage_counts_conflicts_and_kept_ones_are_not_changes() -> None:
    import datasets

    from loop.revisions import RoundStats, render_lineage

    ds = datasets.Dataset.from_list(
        [{"id": str(i), "choice": c} for i, c in enumerate(["original", "model", "conflict_kept", "conflict_review"])]
    )
    r2 = RoundStats.from_dataset(ds, 2, conflicts=2)
    assert r2.changed == 1, "a conflict keeps the current answer"
    text = render_lineage([RoundStats(1, 4, choices={"original": 4}), r2], None)
    head, _, first, second = [line for line in text.splitlines() if line.startswith("|")][:4]
    assert "chose conflict_kept" in head and "chose conflict_review" in head
    cols = [c.strip() for c in head.strip("|").split("|")]
    at = cols.index("conflicts")
    assert [c.strip() for c in first.strip("|").split("|")][at] == "0"
    assert [c.strip() for c in second.strip("|").split("|")][at] == "2"


def test_the_card_lineage_counts_what_the_review_decided() -> None:
    from loop.revisions import RoundStats, read_lineage, render_lineage

    review = {"queued": 3, "reviewed": 2, "changed": 1}
    r2 = RoundStats(2, 4, choices={"original": 3, "model": 1}, conflicts=3, review=review)
    text = render_lineage([RoundStats(1, 4, choices={"original": 4}), r2], None)
    head, _, first, second = [line for line in text.splitlines() if line.startswith("|")][:4]
    cols = [c.strip() for c in head.strip("|").split("|")]
    at = cols.index("to review / decided by review / changed by review")
    assert [c.strip() for c in first.strip("|").split("|")][at] == "0 / 0 / 0"
    assert [c.strip() for c in second.strip("|").split("|")][at] == "3 / 2 / 1"
    assert read_lineage(text)[1].review == review
    plain = render_lineage([RoundStats(1, 4, choices={"original": 4})], None)
    assert "decided by review" not in plain, "no column without a review"


def test_score_metadata_holds_the_finite_scores_and_the_value() -> None:
    from loop.phases.push import score_metadata
    from loop.phases.score import TurnScores
    from loop.selection import Selected, Selection

    scores = [
        TurnScores("a", 0, 1, ifd_round=1.2, disagreement=0.4, current_logprob=-0.8),
        TurnScores("b", 0, 1, ifd_round=float("nan"), ifd_base=None),
    ]
    chosen = Selection([Selected("a", 0, 1, True, value=2.5), Selected("b", 0, 1, False, "not_selected")], [])
    meta = score_metadata(chosen, scores)
    assert meta[("a", 1)] == {"ifd_round": 1.2, "disagreement": 0.4, "current_logprob": -0.8, "value": 2.5}
    assert meta[("b", 1)] == {}, "NaN and missing scores are left out (Argilla takes finite numbers)"
