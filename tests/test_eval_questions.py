"""Evaluation questions: the seeded hold-out never reaches a round, and bad question sets are refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from loop.config import parse_config
from loop.context import RoundContext
from loop.data import Example, load_examples
from loop.errors import ConfigError, DataError, StateError
from loop.evaluation.questions import load_questions, split_holdout
from loop.paths import RunPaths


def _examples(n: int) -> list[Example]:
    return [
        Example(
            f"id{i}",
            [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"a{i}"}],
        )
        for i in range(n)
    ]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, **eval_section):
    rows = [{"id": f"id{i}", "question": f"question {i}?", "answer": f"answer {i}"} for i in range(40)]
    _write(tmp_path / "data.jsonl", rows)
    data = {
        "run": {"name": "ev", "dir": str(tmp_path / "run"), "seed": 7},
        "data": {"path": "data.jsonl"},
        "model": {"name_or_path": "m"},
        "eval": eval_section,
    }
    return parse_config(data, base_dir=tmp_path)


def test_split_is_seeded_by_ids_not_order() -> None:
    examples = _examples(50)
    kept, held = split_holdout(examples, 0.2, seed=3)
    assert len(held) == 10 and len(kept) == 40
    assert {e.id for e in kept} & {e.id for e in held} == set()
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    assert {e.id for e in split_holdout(shuffled, 0.2, seed=3)[1]} == {e.id for e in held}
    assert {e.id for e in split_holdout(examples, 0.2, seed=4)[1]} != {e.id for e in held}
    assert [e.id for e in kept] == [e.id for e in examples if e.id not in {h.id for h in held}]  # order kept


def test_split_holds_out_at_least_one_and_never_everything() -> None:
    assert len(split_holdout(_examples(5), 0.01, 0)[1]) == 1
    with pytest.raises(ConfigError, match="nothing to train on"):
        split_holdout(_examples(2), 0.9, 0)


def test_round_one_never_sees_the_holdout(tmp_path: Path) -> None:
    cfg = _config(tmp_path, holdout_fraction=0.25)
    run = RunPaths(cfg.run_dir())
    ctx = RoundContext(cfg, 1, run)
    trained = {e.id for e in ctx.examples()}
    held = {e.id for e in load_examples(run.holdout)}
    assert len(held) == 10 and len(trained) == 30 and not trained & held
    assert {e.id for e in load_examples(run.round(1).input)} == trained  # the snapshot every phase reads
    questions = load_questions(cfg, run)
    assert {q.id for q in questions} == held
    assert all(q.reference and q.context[-1]["role"] == "user" for q in questions)


def test_holdout_before_round_one_is_a_state_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, holdout_fraction=0.25)
    with pytest.raises(StateError, match="run round 1 first"):
        load_questions(cfg, RunPaths(cfg.run_dir()))


def test_holdout_set_after_round_one_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run = RunPaths(cfg.run_dir())
    RoundContext(cfg, 1, run).examples()  # round 1's snapshot, without a hold-out
    late = _config(tmp_path, holdout_fraction=0.25)
    with pytest.raises(ConfigError, match="after round 1 took its snapshot"):
        load_questions(late, run)


def test_no_eval_section_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with pytest.raises(ConfigError, match="key 'eval': no evaluation questions"):
        load_questions(cfg, RunPaths(cfg.run_dir()))


def test_question_file_with_and_without_references(tmp_path: Path) -> None:
    _write(
        tmp_path / "q.jsonl",
        [
            {"id": "e1", "question": "What is new?"},
            {"id": "e2", "question": "And this?", "answer": "ref"},
            {
                "id": "e3",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                    {"role": "user", "content": "more?"},
                ],
            },
        ],
    )
    cfg = _config(tmp_path, path="q.jsonl")
    qs = load_questions(cfg, RunPaths(cfg.run_dir()))
    assert [(q.id, q.reference, len(q.context)) for q in qs] == [
        ("e1", None, 1),
        ("e2", "ref", 1),
        ("e3", None, 3),
    ]


def test_overlapping_questions_are_refused_with_a_few_listed(tmp_path: Path) -> None:
    rows = [{"id": f"e{i}", "question": f"  Question {i}? "} for i in range(5)] + [
        {"id": "new", "question": "fresh"}
    ]
    _write(tmp_path / "q.jsonl", rows)
    cfg = _config(tmp_path, path="q.jsonl")
    with pytest.raises(
        DataError,
        match=r"5 evaluation question\(s\) also in the training data: 'e0' = training 'id0'.*and 2 more",
    ):
        load_questions(cfg, RunPaths(cfg.run_dir()))


def test_empty_question_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text("\n")
    cfg = _config(tmp_path, path="q.jsonl")
    with pytest.raises(DataError, match="q.jsonl: no rows; the dataset is empty"):
        load_questions(cfg, RunPaths(cfg.run_dir()))


def test_bad_question_row_names_file_line_field(tmp_path: Path) -> None:
    _write(tmp_path / "q.jsonl", [{"id": "e1", "question": "ok"}, {"id": "e2", "question": 3}])
    cfg = _config(tmp_path, path="q.jsonl")
    with pytest.raises(DataError, match=r"q.jsonl:2, field 'question': 'question' must be a string"):
        load_questions(cfg, RunPaths(cfg.run_dir()))


def test_config_refuses_both_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval.holdout_fraction"):
        _config(tmp_path, path="q.jsonl", holdout_fraction=0.1)
    with pytest.raises(ConfigError, match="eval.holdout_fraction"):
        _config(tmp_path, holdout_fraction=1.0)
