"""The `score` phase's value scores: IFD on the tiny trained model, disagreement, verified_unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_fixtures import tiny_model, train_examples, trained_round  # noqa: F401

from loop.annotate import Candidate, PlannedRecord, write_plan
from loop.data import Example
from loop.paths import RoundPaths
from loop.phases.score import (
    SAME_F1,
    TurnScores,
    disagreement,
    ifd,
    ifd_scores,
    ifd_token_ids,
    is_verified_unchanged,
    load_scores,
    verified_answers,
    write_scores,
)
from loop.textsim import token_f1


@pytest.fixture(scope="module")
def round_model(trained_round):  # noqa: F811
    from loop.models import load_generation_model

    return load_generation_model(trained_round.model.round_dir)


def _loss(model, prompt: list[int], answer: list[int]) -> float:
    """Mean cross-entropy of `answer` after `prompt`, the way transformers computes a masked LM loss."""
    import torch

    ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])
    with torch.inference_mode():
        return model(input_ids=ids, labels=labels).loss.item()


def test_ifd_is_the_ratio_of_the_two_losses_computed_independently(round_model) -> None:
    model, tokenizer = round_model
    examples = train_examples()
    got = ifd_scores(model, tokenizer, examples, max_length=256)
    rows = ifd_token_ids(examples, tokenizer, 256)
    assert (
        len(got) == len(rows) == sum(len(ex.assistant_turns()) for ex in examples)
    )  # multi-turn: one per turn
    for key, with_q, alone, answer in rows[:4] + rows[-2:]:
        assert len(alone) < len(with_q), "the answer alone has no question before it"
        expected = _loss(model, with_q, answer) / _loss(model, alone, answer)
        assert got[key] == pytest.approx(expected, rel=1e-4)


def test_a_trained_answer_is_easier_given_its_question_than_a_random_string(round_model) -> None:
    model, tokenizer = round_model
    trained = train_examples()[0]
    question = trained.messages[0]
    noise = Example(
        "noise", [question, {"role": "assistant", "content": "zebra quantum violet 7731 umbrella"}]
    )
    ((_, q_trained, _, a_trained), (_, q_noise, _, a_noise)) = ifd_token_ids([trained, noise], tokenizer, 256)
    assert _loss(model, q_trained, a_trained) < 0.5 * _loss(model, q_noise, a_noise)
    scores = ifd_scores(model, tokenizer, [trained, noise], max_length=256)
    # The model learned this answer for this question: the question helps (IFD well below 1).
    assert scores[(trained.id, 1)] < 0.5
    assert scores[(trained.id, 1)] < scores[("noise", 1)]


def test_long_turns_keep_the_answer_and_the_end_of_the_history(round_model) -> None:
    _, tokenizer = round_model
    long = Example(
        "long", [{"role": "user", "content": "why " * 300}, {"role": "assistant", "content": "ok " * 300}]
    )
    ((_, with_q, alone, answer),) = ifd_token_ids([long], tokenizer, 64)
    assert len(with_q) + len(answer) <= 64 and len(alone) + len(answer) <= 64
    assert len(answer) >= 32 - len(alone)


def test_ifd_none_when_undefined() -> None:
    assert ifd(-1.0, -2.0) == 0.5
    assert ifd(None, -2.0) is None and ifd(-1.0, 0.0) is None


def test_disagreement_formula() -> None:
    assert disagreement("a b", []) is None
    assert disagreement("a b", ["a b", "a b"]) == 0.0  # K identical samples equal to the current answer
    # d_current: 1 - mean(F1("a b", "a b")=1, F1("c d", "a b")=0) = 0.5; d_candidates: 1 - F1 = 1.
    assert disagreement("a b", ["a b", "c d"]) == pytest.approx(0.75)
    # One sample: no pairs, d_candidates = 0.
    assert disagreement("a b c d", ["a b"]) == pytest.approx((1 - token_f1("a b", "a b c d")) / 2)


def _plan_record(example_id: str, message_index: int, texts: list[str]) -> PlannedRecord:
    slots = {
        f"answer_{i + 1}": Candidate(t, "original" if i == 0 else "m@round-1") for i, t in enumerate(texts)
    }
    return PlannedRecord(
        f"r/r1/{example_id}/t0", example_id, 0, (), slots, "answer_1", "dataset", message_index
    )


def _decision(example_id: str, answer: str, choice: str, **kw) -> str:
    body = {"example_id": example_id, "turn": 1, "answer": answer, "choice": choice, "completed": True}
    return json.dumps({"flagged_none_acceptable": False, **body, **kw}) + "\n"


def test_verified_answers_come_from_labelers_decisions_and_chain_through_skips(tmp_path: Path) -> None:
    paths = RoundPaths(tmp_path, 1)
    paths.dir.mkdir(parents=True)
    write_plan(
        paths.dir,
        [
            _plan_record("kept", 1, ["Use a list.", "Use a tuple."]),
            _plan_record("chosen", 1, ["Old answer.", "New answer."]),
            _plan_record("edited", 1, ["Old.", "Other."]),
            _plan_record("unanswered", 1, ["Same."]),
            _plan_record("flagged", 1, ["Bad.", "Worse."]),
        ],
    )
    paths.decisions.write_text(
        _decision("kept", "Use a list.", "original")
        + _decision("chosen", "New answer.", "model")
        + _decision("edited", "Written by hand.", "edited")
        + _decision("unanswered", "Same.", "original", completed=False)
        + _decision("flagged", "Bad.", "original", flagged_none_acceptable=True)
        + _decision("skipped", "Skipped.", "auto_kept", completed=False, reason="verified_unchanged")
        + _decision("unasked", "Unasked.", "auto_kept", completed=False, reason="not_selected")
    )
    write_scores(
        [TurnScores("skipped", 0, 1, verified_unchanged=True, ranked_options=["Skipped.", "X."])],
        paths.scores,
    )
    got = verified_answers(paths)
    assert set(got) == {("kept", 1), ("chosen", 1), ("edited", 1), ("skipped", 1)}
    assert got[("kept", 1)].options == ("Use a list.", "Use a tuple.")
    assert (
        got[("edited", 1)].answer == "Written by hand." and "Written by hand." in got[("edited", 1)].options
    )
    assert got[("skipped", 1)].options == ("Skipped.", "X."), "options carried from the round that asked"
    assert verified_answers(RoundPaths(tmp_path, 2)) == {}, "a round not aggregated verifies nothing"


def test_a_conflict_is_verified_only_once_a_review_decided_it(tmp_path: Path) -> None:
    paths = RoundPaths(tmp_path, 1)
    paths.dir.mkdir(parents=True)
    write_plan(paths.dir, [_plan_record(k, 1, ["Old.", "New."]) for k in ("kept", "reviewed", "left")])
    paths.decisions.write_text(
        _decision("kept", "Old.", "conflict_kept", conflict=True)
        + _decision("reviewed", "Old.", "conflict_review", conflict=True)
        + _decision("left", "Old.", "conflict_review", conflict=True)
    )
    assert verified_answers(paths) == {}, "labelers who disagree verify nothing"
    paths.reviewed_decisions.write_text(
        _decision("kept", "Old.", "conflict_kept", conflict=True)
        + _decision("reviewed", "New.", "model", conflict=True, reviewed_by="owner")
        + _decision("left", "Old.", "conflict_review", conflict=True)
    )
    got = verified_answers(paths, paths.reviewed_decisions)
    assert set(got) == {("reviewed", 1)} and got[("reviewed", 1)].answer == "New."


def test_verified_unchanged_needs_the_same_answer_and_no_new_candidate() -> None:
    from loop.phases.score import Verified

    v = Verified(
        "It is compiled to bytecode.", ("It is compiled to bytecode.", "It is interpreted line by line.")
    )
    same = ["It is compiled to bytecode", "it is interpreted line by line."]  # punctuation and case aside
    assert is_verified_unchanged("It is  compiled to bytecode.", same, v) == (True, list(v.options))
    new = [*same, "Python compiles source to bytecode for the VM."]
    assert token_f1(new[-1], v.options[0]) < SAME_F1
    assert is_verified_unchanged("It is compiled to bytecode.", new, v) == (False, list(v.options))
    assert is_verified_unchanged("Another answer.", same, v) == (False, [])
    assert is_verified_unchanged("It is compiled to bytecode.", same, None) == (False, [])


def test_scores_round_trip(tmp_path: Path) -> None:
    rows = [
        TurnScores("a", 0, 1, 0.8, None, -1.2, 0.3, False, []),
        TurnScores("b", 1, 3, None, 1.1, None, None, True, ["x", "y"]),
    ]
    assert load_scores(write_scores(rows, tmp_path / "scores.parquet")) == rows
