"""Aggregation: every number here is computed by hand in the comments beside it."""

from __future__ import annotations

import copy
import json
from fractions import Fraction

import pytest

from loop.phases.aggregate import (
    ConflictRule,
    Decision,
    RecordCandidates,
    Response,
    aggregate_round,
    apply_decisions,
    borda_points,
    conflict_reason,
    decide,
    kendall_tau_b,
    kendalls_w,
)

SLOTS = ["a", "b", "c", "d"]
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": 0}
SAMPLED = {"temperature": 1.0, "top_p": 0.95, "seed": 1}


def record(
    slots: dict[str, str] | None = None,
    original: str | None = "a",
    settings: dict | None = None,
    rid: str = "r1",
    example: str = "ex1",
    turn: int = 2,
) -> RecordCandidates:
    slots = slots or {s: f"answer {s}" for s in SLOTS}
    current = slots[original] if original else "current answer"
    return RecordCandidates(rid, example, turn, slots, current, original, settings or {})


def ranked(annotator: str, *order: str | tuple[str, ...], **kw) -> Response:
    """A ranking from best to worst; a tuple is a tie group sharing one rank (dense ranks)."""
    pairs = []
    for rank, item in enumerate(order, start=1):
        for slot in item if isinstance(item, tuple) else (item,):
            pairs.append((slot, rank))
    return Response(annotator, tuple(pairs), **kw)


# --------------------------------------------------------------------------- Borda


def test_borda_points_without_and_with_ties():
    # 4 candidates: 3, 2, 1, 0 points.
    assert borda_points([("a", 1), ("b", 2), ("c", 3), ("d", 4)], SLOTS) == {"a": 3, "b": 2, "c": 1, "d": 0}
    # b first (3), a and c tied on places 2-3 share (2+1)/2 = 1.5, d last (0).
    assert borda_points([("b", 1), ("a", 2), ("c", 2), ("d", 3)], SLOTS) == {
        "b": 3,
        "a": Fraction(3, 2),
        "c": Fraction(3, 2),
        "d": 0,
    }
    # Only the order matters, not the rank numbers: 1, 1, 5 is the same as 1, 1, 2.
    assert borda_points([("a", 1), ("b", 1), ("c", 5)], ["a", "b", "c"]) == {"a": 1.5, "b": 1.5, "c": 0}
    # Unranked candidates tie for last: a 2, b and c share (1+0)/2.
    assert borda_points([("a", 1)], ["a", "b", "c"]) == {"a": 2, "b": 0.5, "c": 0.5}
    # Everyone tied: each gets the mean (2+1+0)/3 = 1.
    assert borda_points([("a", 1), ("b", 1), ("c", 1)], ["a", "b", "c"]) == {"a": 1, "b": 1, "c": 1}


def test_borda_sum_over_annotators_picks_the_model_candidate():
    # alice: a b c d -> 3 2 1 0; bob: b (a c) d -> a 1.5, b 3, c 1.5, d 0.
    # Totals: a 4.5, b 5, c 2.5, d 0 -> b wins.
    rec = record(settings={"b": SAMPLED, "c": GREEDY})
    d = decide(rec, [ranked("alice", "a", "b", "c", "d"), ranked("bob", "b", ("a", "c"), "d")])
    assert d.borda == {"a": 4.5, "b": 5.0, "c": 2.5, "d": 0.0}
    assert (d.choice, d.winning_slot, d.answer) == ("model", "b", "answer b")
    assert d.settings == SAMPLED
    assert d.annotator_count == 2
    assert d.changed and d.completed and not d.flagged_none_acceptable
    # W: ranks alice 1 2 3 4, bob 2.5 1 2.5 4 -> sums 3.5 3 5.5 8, mean 5, S = 15.5;
    # ties: bob has one pair, 2^3 - 2 = 6. W = 12*15.5 / (2^2 (4^3 - 4) - 2*6) = 186/228 = 31/38.
    assert d.agreement == pytest.approx(31 / 38, abs=1e-12)


def test_winning_original_keeps_the_current_answer():
    d = decide(record(), [ranked("alice", "a", "b", "c", "d")])
    assert (d.choice, d.winning_slot, d.answer, d.settings, d.changed) == (
        "original",
        "a",
        "answer a",
        None,
        False,
    )


# --------------------------------------------------------------------------- tie-break


def test_tie_prefers_the_original_answer():
    # alice: b a c d, bob: a b c d -> a 2+3 = 5, b 3+2 = 5: tie, the original (a) stays.
    d = decide(record(), [ranked("alice", "b", "a", "c", "d"), ranked("bob", "a", "b", "c", "d")])
    assert d.borda["a"] == d.borda["b"] == 5
    assert (d.choice, d.winning_slot) == ("original", "a")


def test_tie_without_original_prefers_greedy_then_slot_order():
    settings = {"b": SAMPLED, "c": GREEDY, "d": SAMPLED}
    # b and c tie on 5 points; c is greedy, so c wins although b comes first in slot order.
    responses = [ranked("alice", "b", "c", "a", "d"), ranked("bob", "c", "b", "a", "d")]
    d = decide(record(settings=settings), responses)
    assert d.borda["b"] == d.borda["c"] == 5
    assert (d.choice, d.winning_slot, d.settings) == ("model", "c", GREEDY)
    # b and d tie, neither greedy: slot order (b before d) decides.
    responses = [ranked("alice", "b", "d", "a", "c"), ranked("bob", "d", "b", "a", "c")]
    assert decide(record(settings=settings), responses).winning_slot == "b"


def test_decision_does_not_depend_on_response_order():
    responses = [
        ranked("alice", "b", "c", "a", "d"),
        ranked("bob", "c", "b", "a", "d"),
        ranked("carol", ("b", "c"), "d", "a"),
    ]
    rec = record(settings={"c": GREEDY})
    first = decide(rec, responses)
    assert all(decide(rec, order) == first for order in (responses[::-1], responses[1:] + responses[:1]))
    assert first.winning_slot == "c"


# --------------------------------------------------------------------------- edits


def test_edited_answer_wins_over_ranked_candidates():
    responses = [
        ranked("alice", "b", "a", "c", "d"),
        ranked("bob", "b", "a", "c", "d", edited="  A better answer, written by hand.\n"),
    ]
    d = decide(record(), responses)
    assert (d.choice, d.answer, d.winning_slot, d.settings) == (
        "edited",
        "A better answer, written by hand.",
        None,
        None,
    )
    assert d.editor == "bob" and d.changed
    assert d.agreement == 1.0  # identical rankings


def test_edit_equal_to_a_candidate_is_not_an_edit():
    # The UI pre-fills the text box with a candidate; submitting it unchanged is a ranking, not an edit.
    d = decide(record(), [ranked("alice", "b", "a", "c", "d", edited="answer   a\n")])
    assert (d.choice, d.winning_slot) == ("model", "b")


def test_several_edits_choose_the_annotator_closest_to_consensus():
    # Consensus (Borda over 3): a 3+3+0 = 6, b 2+2+1 = 5, c 1+1+2 = 4, d 0+0+3 = 3 -> a > b > c > d.
    # carol agrees perfectly (tau-b 1); bob reversed it (tau-b -1): carol's edit wins.
    responses = [
        ranked("alice", "a", "b", "c", "d"),
        ranked("bob", "d", "c", "b", "a", edited="bob's answer"),
        ranked("carol", "a", "b", "c", "d", edited="carol's answer"),
    ]
    d = decide(record(), responses)
    assert (d.choice, d.answer, d.editor) == ("edited", "carol's answer", "carol")


def test_several_edits_with_equal_agreement_go_to_the_first_username():
    responses = [
        ranked("zoe", "a", "b", "c", "d", edited="zoe's answer"),
        ranked("mia", "a", "b", "c", "d", edited="mia's answer"),
    ]
    assert decide(record(), responses).editor == "mia"
    assert decide(record(), responses[::-1]).editor == "mia"


def test_kendall_tau_b_hand_values():
    x = {"a": 4, "b": 3, "c": 2, "d": 1}
    assert kendall_tau_b(x, x) == 1.0
    assert kendall_tau_b(x, {"a": 1, "b": 2, "c": 3, "d": 4}) == -1.0
    # y ties a and b: concordant 5, discordant 0, ties in y 1 of 6 pairs -> 5 / sqrt(6 * 5).
    assert kendall_tau_b(x, {"a": 2, "b": 2, "c": 1, "d": 0}) == pytest.approx(5 / 30**0.5)
    assert kendall_tau_b(x, {"a": 0, "b": 0, "c": 0, "d": 0}) == 0.0


# --------------------------------------------------------------------------- none acceptable


def test_none_acceptable_majority_keeps_current_answer_and_flags():
    responses = [
        ranked("alice", "b", "a", "c", "d", none_acceptable=True),
        ranked("bob", "b", "a", "c", "d", none_acceptable=True),
        ranked("carol", "b", "a", "c", "d"),
    ]
    d = decide(record(), responses)
    assert d.borda["b"] == 9  # b would win on points
    assert (d.choice, d.answer, d.winning_slot, d.flagged_none_acceptable) == (
        "original",
        "answer a",
        "a",
        True,
    )


def test_none_acceptable_without_majority_is_ignored():
    # 1 of 2 is not a strict majority.
    responses = [ranked("alice", "b", "a", "c", "d", none_acceptable=True), ranked("bob", "b", "a", "c", "d")]
    d = decide(record(), responses)
    assert (d.choice, d.winning_slot, d.flagged_none_acceptable) == ("model", "b", False)


def test_edit_beats_none_acceptable_majority():
    responses = [Response("alice", (), edited="fixed", none_acceptable=True)]
    d = decide(record(), responses)
    assert (d.choice, d.answer, d.flagged_none_acceptable) == ("edited", "fixed", True)


# --------------------------------------------------------------------------- Kendall's W


def test_kendalls_w_hand_computed_without_ties():
    # a b c / a c b / b a c: rank sums a 4, b 6, c 8, mean 6, S = 8; W = 12*8 / (9 * 24) = 4/9.
    rankings = [
        [("a", 1), ("b", 2), ("c", 3)],
        [("a", 1), ("c", 2), ("b", 3)],
        [("b", 1), ("a", 2), ("c", 3)],
    ]
    assert kendalls_w(rankings, ["a", "b", "c"]) == pytest.approx(4 / 9, abs=1e-12)


def test_kendalls_w_tie_correction():
    # 3 raters, 3 items: (a b) c / a b c / a (b c).
    # ranks: a 1.5 1 1; b 1.5 2 2.5; c 3 3 2.5 -> sums 3.5, 6, 8.5, mean 6, S = 6.25 + 0 + 6.25 = 12.5.
    # ties: two pairs, (8 - 2) * 2 = 12. W = 12*12.5 / (9*24 - 3*12) = 150/180 = 5/6 (150/216 uncorrected).
    rankings = [
        [("a", 1), ("b", 1), ("c", 2)],
        [("a", 1), ("b", 2), ("c", 3)],
        [("a", 1), ("b", 2), ("c", 2)],
    ]
    assert kendalls_w(rankings, ["a", "b", "c"]) == pytest.approx(5 / 6, abs=1e-12)


def test_kendalls_w_extremes_and_undefined():
    order = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
    reverse = [("a", 4), ("b", 3), ("c", 2), ("d", 1)]
    assert kendalls_w([order, order, order], SLOTS) == 1.0
    assert kendalls_w([order, reverse], SLOTS) == 0.0
    assert kendalls_w([order], SLOTS) is None  # one annotator: undefined, not 1.0
    all_tied = [(s, 1) for s in SLOTS]
    assert kendalls_w([all_tied, all_tied], SLOTS) is None


def test_single_annotator_has_no_agreement():
    d = decide(record(), [ranked("alice", "b", "a", "c", "d")])
    assert d.agreement is None and d.annotator_count == 1


# --------------------------------------------------------------------------- incomplete records


def test_no_responses_keeps_the_original():
    d = decide(record(original=None, settings={"a": GREEDY}), [])
    assert (d.choice, d.answer, d.annotator_count, d.agreement, d.completed) == (
        "original",
        "current answer",
        0,
        None,
        False,
    )
    assert d.borda == {s: 0.0 for s in SLOTS}


def test_below_min_submitted_keeps_the_original():
    d = decide(record(), [ranked("alice", "b", "a", "c", "d")], min_submitted=2)
    assert (d.choice, d.answer, d.annotator_count, d.completed) == ("original", "answer a", 1, False)


def test_responses_that_do_not_fit_the_record_fail():
    with pytest.raises(ValueError, match="unknown slots"):
        decide(record(), [Response("alice", (("zz", 1),))])
    with pytest.raises(ValueError, match="two responses from 'alice'"):
        decide(record(), [ranked("alice", "a"), ranked("alice", "b")])


# --------------------------------------------------------------------------- round


def test_aggregate_round_counts_and_mean_agreement():
    recs = [record(rid=f"r{i}", example=f"ex{i}") for i in range(4)]
    responses = {
        "r0": [ranked("alice", "b", "a", "c", "d"), ranked("bob", "b", "a", "c", "d")],  # model, W 1
        "r1": [ranked("alice", "a", "b", "c", "d"), ranked("bob", "d", "c", "b", "a")],  # original, W 0
        "r2": [ranked("alice", "a", "b", "c", "d", edited="new")],  # edited, W None
    }
    agg = aggregate_round(3, recs, responses, discarded=2, draft=1)
    assert agg.round == 3 and agg.records == 4
    assert agg.counts == {"original": 2, "model": 1, "edited": 1}
    assert (agg.changed, agg.completed, agg.discarded, agg.draft) == (2, 3, 2, 1)
    assert agg.mean_agreement == 0.5  # mean of 1 and 0; None left out
    assert [d.choice for d in agg.decisions] == ["model", "original", "edited", "original"]
    assert aggregate_round(1, recs[3:], {}).mean_agreement is None


# --------------------------------------------------------------------------- applying


def _decision(example: str, turn: int, answer: str, choice: str, **kw) -> Decision:
    defaults = dict(
        record_id=f"{example}/t{turn}",
        winning_slot=None,
        settings=None,
        annotator_count=2,
        agreement=None,
        flagged_none_acceptable=False,
        borda={},
    )
    return Decision(example_id=example, turn=turn, answer=answer, choice=choice, **{**defaults, **kw})


def test_apply_decisions_single_and_multi_turn():
    rows = [
        {
            "id": "q1",
            "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "old"}],
            "source": "faq",
        },
        {
            "id": "chat",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "old 1"},
                {"role": "user", "content": "More?"},
                {"role": "assistant", "content": "old 2"},
            ],
            "source": "chat",
        },
        {
            "id": "untouched",
            "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "x"}],
        },
    ]
    before = copy.deepcopy(rows)
    decisions = [
        _decision("q1", 1, "new", "model", settings=GREEDY, agreement=0.5, winning_slot="b"),
        _decision("chat", 2, "model 1", "model", settings=SAMPLED, agreement=1.0, annotator_count=3),
        _decision("chat", 4, "edited 2", "edited", agreement=0.0, annotator_count=2),
    ]
    out = apply_decisions(rows, decisions, round_n=2)
    assert rows == before  # inputs untouched

    q1, chat, untouched = out
    assert q1["messages"][1] == {"role": "assistant", "content": "new"}
    assert (q1["round"], q1["choice"], q1["annotator_count"], q1["agreement"]) == (2, "model", 2, 0.5)
    assert json.loads(q1["generation_settings"]) == GREEDY
    assert q1["source"] == "faq"

    assert [m["content"] for m in chat["messages"]] == ["Be brief.", "Hi", "model 1", "More?", "edited 2"]
    # Row summary: strongest choice, fewest annotators, mean agreement, the one model turn's settings.
    assert (chat["choice"], chat["annotator_count"], chat["agreement"]) == ("edited", 2, 0.5)
    assert json.loads(chat["generation_settings"]) == SAMPLED
    assert [(t["turn"], t["choice"], t["annotator_count"]) for t in chat["turns"]] == [
        (2, "model", 3),
        (4, "edited", 2),
    ]

    assert untouched["messages"] == rows[2]["messages"]

    # An `original` decision keeps the row's own text, whatever the record carried.
    kept = apply_decisions(rows[:1], [_decision("q1", 1, "stale copy", "original")], round_n=3)[0]
    assert kept["messages"][1]["content"] == "old" and kept["choice"] == "original"
    assert (untouched["choice"], untouched["annotator_count"], untouched["agreement"]) == (
        "original",
        0,
        None,
    )
    assert untouched["generation_settings"] is None
    provenance = {"round", "choice", "annotator_count", "agreement", "generation_settings", "turns"}
    assert all(provenance <= set(row) for row in out)


def test_apply_decisions_rejects_a_turn_that_is_not_an_assistant_message():
    rows = [
        {"id": "q1", "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "a"}]}
    ]
    with pytest.raises(ValueError, match="example 'q1' turn 0"):
        apply_decisions(rows, [_decision("q1", 0, "x", "model")], round_n=1)
    with pytest.raises(ValueError, match="two decisions"):
        apply_decisions(rows, [_decision("q1", 1, "x", "model"), _decision("q1", 1, "y", "model")], 1)


# --------------------------------------------------------------------------- conflicts (aggregate.on_conflict)

# alice b c a d, bob c b a d: rank sums b 3, c 3, a 6, d 8 (mean 5, S = 4+4+1+9 = 18), so
# W = 12*18 / (2^2 (4^3-4)) = 216/240 = 0.9: high agreement, yet the first places differ (b vs c).
# Borda b 3+2 = 5, c 2+3 = 5, a 1+1 = 2: b and c tie, slot order gives b.
SPLIT_TOP = [ranked("alice", "b", "c", "a", "d"), ranked("bob", "c", "b", "a", "d")]


def test_conflict_reason_rule():
    rule = ConflictRule()  # the config defaults: W below 0.5, or first places with nothing in common
    rankings = [r.ranking for r in SPLIT_TOP]
    assert kendalls_w(rankings, SLOTS) == pytest.approx(0.9)
    assert conflict_reason(rankings, SLOTS, 0.9, rule) == "top_choices_differ"
    assert conflict_reason(rankings, SLOTS, 0.9, ConflictRule(top_choice=False)) is None
    assert conflict_reason(rankings, SLOTS, 0.9, ConflictRule(below=0.95, top_choice=False)) == "low_agreement"
    # Reversed orders: W 0 (every rank sum is 5) and different first places: both reasons.
    opposed = [ranked("alice", "a", "b", "c", "d").ranking, ranked("bob", "d", "c", "b", "a").ranking]
    assert conflict_reason(opposed, SLOTS, kendalls_w(opposed, SLOTS), rule) == "low_agreement+top_choices_differ"
    # A tie at first place counts as all first: {a, b} and {b} share b. W: sums a 3.5, b 2.5, c 6, d 8,
    # S = 2.25+6.25+1+9 = 18.5, alice's tie of 2 gives T = 6: 12*18.5 / (4*60 - 2*6) = 222/228.
    tied = [ranked("alice", ("a", "b"), "c", "d").ranking, ranked("bob", "b", "a", "c", "d").ranking]
    w = kendalls_w(tied, SLOTS)
    assert w == pytest.approx(222 / 228)
    assert conflict_reason(tied, SLOTS, w, rule) is None
    # One labeler is never a conflict, whatever the threshold.
    assert conflict_reason(rankings[:1], SLOTS, None, ConflictRule(below=1.0)) is None
    assert conflict_reason([], SLOTS, None, rule) is None


def test_on_conflict_keep_current_keeps_the_answer_and_says_why():
    d = decide(record(), SPLIT_TOP, conflict=ConflictRule())
    assert (d.choice, d.answer, d.winning_slot, d.changed) == ("conflict_kept", "answer a", "a", False)
    assert (d.conflict, d.reason, d.completed) == (True, "top_choices_differ", True)
    assert d.agreement == pytest.approx(0.9) and d.borda == {"a": 2.0, "b": 5.0, "c": 5.0, "d": 0.0}


def test_on_conflict_best_is_the_plain_borda_winner_flagged():
    plain = decide(record(), SPLIT_TOP)  # no rule: the rules before conflicts existed
    best = decide(record(), SPLIT_TOP, conflict=ConflictRule(mode="best"))
    assert (plain.choice, plain.winning_slot, plain.conflict, plain.reason) == ("model", "b", False, None)
    assert (best.choice, best.winning_slot, best.answer, best.changed) == ("model", "b", "answer b", True)
    assert (best.conflict, best.reason) == (True, "top_choices_differ")


def test_on_conflict_review_keeps_the_answer_for_the_next_round():
    d = decide(record(), SPLIT_TOP, conflict=ConflictRule(mode="review"))
    assert (d.choice, d.answer, d.conflict, d.reason) == ("conflict_review", "answer a", True, "top_choices_differ")


def test_conflict_rule_leaves_agreement_single_labelers_edits_and_none_acceptable_alone():
    rule = ConflictRule(below=0.95)
    agreeing = [ranked("alice", "b", "a", "c", "d"), ranked("bob", "b", "a", "c", "d")]  # W 1
    assert decide(record(), agreeing, conflict=rule).choice == "model"
    assert decide(record(), SPLIT_TOP[:1], conflict=rule).choice == "model", "one labeler: no conflict"
    edited = [SPLIT_TOP[0], Response("bob", SPLIT_TOP[1].ranking, edited="A new answer.")]
    d = decide(record(), edited, conflict=rule)
    assert (d.choice, d.answer, d.conflict) == ("edited", "A new answer.", False)
    flagged = [Response(r.annotator, r.ranking, none_acceptable=True) for r in SPLIT_TOP]
    d = decide(record(), flagged, conflict=rule)
    assert (d.choice, d.flagged_none_acceptable, d.conflict) == ("original", True, False)


def test_aggregate_round_counts_conflicts_and_the_dataset_keeps_the_reason():
    recs = [record(rid="r0", example="ex0", turn=1), record(rid="r1", example="ex1", turn=1)]
    responses = {"r0": SPLIT_TOP, "r1": [ranked("alice", "b", "a", "c", "d"), ranked("bob", "b", "a", "c", "d")]}
    agg = aggregate_round(1, recs, responses, conflict=ConflictRule())
    assert agg.counts == {"original": 0, "model": 1, "edited": 0, "conflict_kept": 1}
    assert (agg.conflicts, agg.changed) == (1, 1)
    rows = [
        {"id": ex, "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "answer a"}]}
        for ex in ("ex0", "ex1")
    ]
    out = apply_decisions(rows, agg.decisions, 1)
    assert out[0]["messages"][1]["content"] == "answer a" and out[0]["choice"] == "conflict_kept"
    assert out[0]["turns"][0]["reason"] == "top_choices_differ"
    assert out[1]["messages"][1]["content"] == "answer b"
    best = aggregate_round(1, recs, responses, conflict=ConflictRule(mode="best"))
    assert (best.conflicts, best.counts["model"], best.changed) == (1, 2, 2)
