from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.errors import StateError
from loop.phases import PHASE_NAMES as PHASES
from loop.phases import PHASES as PHASES_BY_NAME
from loop.state import RunState


def test_new_run_starts_at_round_one_train(tmp_path: Path) -> None:
    state = RunState.load(tmp_path)
    assert state.current_round() == 1
    assert state.next_phase(1) == "train"
    assert not (tmp_path / "state.json").exists()


def test_phases_are_recorded_in_order_and_persisted(tmp_path: Path) -> None:
    state = RunState.load(tmp_path)
    state.mark_done(1, "train", "h1", 1.5, {"final_loss": 0.1})
    with pytest.raises(StateError, match="cannot finish 'push' before regenerate, generate, score"):
        state.mark_done(1, "push", "h3", 1.0)
    reloaded = RunState.load(tmp_path)
    assert reloaded.is_done(1, "train") and not reloaded.is_done(1, "generate")
    assert reloaded.record(1, "train").summary == {"final_loss": 0.1}
    assert reloaded.next_phase(1) == "regenerate"
    for phase in PHASES[1:]:
        reloaded.mark_done(1, phase, "h", 0.1)
    assert RunState.load(tmp_path).current_round() == 2
    assert RunState.load(tmp_path).finished_rounds() == [1]


def test_unknown_phase_and_corrupt_state_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="unknown phase 'deploy'"):
        RunState.load(tmp_path).mark_done(1, "deploy", "h", 0)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        RunState.load(tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"version": 99, "rounds": {}}))
    with pytest.raises(StateError, match="state version 99"):
        RunState.load(tmp_path)


def test_state_file_is_replaced_atomically(tmp_path: Path) -> None:
    state = RunState.load(tmp_path)
    state.mark_done(1, "train", "h1", 1.0)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.json"]
    assert leftovers == []


def test_version_1_state_migrates_pull_into_pull_plus_aggregate(tmp_path: Path) -> None:
    """A state.json written before the phase registry keeps loading, through named migrations."""
    v1 = {"status": "done", "inputs_hash": "abc", "finished_at": "2026-01-01T00:00:00+00:00", "seconds": 1.0}
    pull = {**v1, "summary": {"records": 6, "completed": 6, "changed": 2, "choices": {"model": 2}, "agreement": 0.5}}
    rounds = {"1": {p: {**v1, "summary": {}} for p in ("train", "generate", "push", "wait", "publish")}}
    rounds["1"]["pull"] = pull
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "rounds": rounds}))
    state = RunState.load(tmp_path)
    assert state.finished_rounds() == [1] and state.current_round() == 2
    agg = state.record(1, "aggregate")
    assert agg.summary == {"records": 6, "completed": 6, "changed": 2, "choices": {"model": 2}, "agreement": 0.5}
    assert agg.keys is None  # the driver adopts today's hash for migrated records
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["version"] == 2
    assert saved["migrations"] == [
        "m001_split_aggregate_from_pull",
        "m002_per_key_hashes",
        "m003_score_before_push",
        "m004_regenerate_after_train",
        "m005_review_after_aggregate",
        "m006_eval_after_publish",
    ]
    assert RunState.load(tmp_path).record(1, "aggregate") == agg


def test_a_run_pushed_before_the_score_phase_resumes(tmp_path: Path) -> None:
    """m003: rounds whose push is done get `score` done (empty summary); from score on, the driver
    adopts today's hashes (push now hashes `select`), so the run resumes instead of being refused."""
    rec = {"status": "done", "inputs_hash": "h", "finished_at": "2026-01-01T00:00:00+00:00", "seconds": 2.0}
    keys = {"run.seed": "abc"}
    old = [p for p in PHASES if p not in ("score", "regenerate", "review")]
    rounds = {
        "1": {p: {**rec, "summary": {"n": 1}, "keys": keys} for p in old},  # finished
        "2": {p: {**rec, "summary": {}, "keys": keys} for p in ("train", "generate", "push", "wait")},
        "3": {},
    }
    rounds["3"] = {p: {**rec, "summary": {}, "keys": keys} for p in ("train", "generate")}  # not pushed
    migrations = ["m001_split_aggregate_from_pull", "m002_per_key_hashes"]
    (tmp_path / "state.json").write_text(json.dumps({"version": 2, "migrations": migrations, "rounds": rounds}))
    state = RunState.load(tmp_path)
    assert state.migrations[-4:] == [
        "m003_score_before_push",
        "m004_regenerate_after_train",
        "m005_review_after_aggregate",
        "m006_eval_after_publish",
    ]
    assert state.finished_rounds() == [1]
    assert state.next_phase(2) == "pull", "round 2 resumes where it stopped"
    assert state.next_phase(3) == "score", "a round not pushed yet scores before its push"
    for n in (1, 2):
        score = state.record(n, "score")
        assert score.summary == {} and score.keys is None and score.seconds == 0.0
        assert state.record(n, "train").keys == keys, "phases before score (and regenerate) keep their hashes"
        assert state.record(n, "push").keys is None and state.record(n, "wait").keys is None
    assert PHASES_BY_NAME["score"].summary_from({}).turns == 0, "the empty summary reads back"
    assert RunState.load(tmp_path).rounds == state.rounds, "applied once and saved"


def test_a_run_trained_before_the_regenerate_phase_resumes(tmp_path: Path) -> None:
    """m004: rounds whose train is done get `regenerate` done as a no-op; the phases after it adopt
    today's hashes (generate now chains on regenerate's), so the run resumes instead of being refused."""
    rec = {"status": "done", "inputs_hash": "h", "finished_at": "2026-01-01T00:00:00+00:00", "seconds": 2.0}
    keys = {"run.seed": "abc"}
    old = [p for p in PHASES if p != "regenerate"]
    rounds = {
        "1": {p: {**rec, "summary": {}, "keys": keys} for p in old},  # finished
        "2": {p: {**rec, "summary": {}, "keys": keys} for p in ("train", "generate")},
    }
    migrations = ["m001_split_aggregate_from_pull", "m002_per_key_hashes", "m003_score_before_push"]
    (tmp_path / "state.json").write_text(json.dumps({"version": 2, "migrations": migrations, "rounds": rounds}))
    state = RunState.load(tmp_path)
    assert state.migrations[-3:] == [
        "m004_regenerate_after_train",
        "m005_review_after_aggregate",
        "m006_eval_after_publish",
    ]
    assert state.finished_rounds() == [1]
    assert state.next_phase(2) == "score", "round 2 resumes where it stopped"
    for n in (1, 2):
        regen = state.record(n, "regenerate")
        assert regen.keys is None and regen.seconds == 0.0 and "before the regenerate phase" in regen.summary["skipped"]
        assert state.record(n, "train").keys == keys and state.record(n, "generate").keys is None
    assert PHASES_BY_NAME["regenerate"].summary_from(state.record(1, "regenerate").summary).added == 0
    assert RunState.load(tmp_path).rounds == state.rounds, "applied once and saved"


def test_a_run_aggregated_before_the_review_phase_resumes(tmp_path: Path) -> None:
    """m005: rounds whose aggregate is done get `review` done (empty summary: nothing reviewed, so
    aggregate's output stays the round's dataset); publish adopts today's hash."""
    rec = {"status": "done", "inputs_hash": "h", "finished_at": "2026-01-01T00:00:00+00:00", "seconds": 2.0}
    keys = {"run.seed": "abc"}
    old = [p for p in PHASES if p != "review"]
    rounds = {
        "1": {p: {**rec, "summary": {}, "keys": keys} for p in old},  # finished
        "2": {p: {**rec, "summary": {}, "keys": keys} for p in old[: old.index("pull") + 1]},  # not aggregated
    }
    migrations = [
        "m001_split_aggregate_from_pull",
        "m002_per_key_hashes",
        "m003_score_before_push",
        "m004_regenerate_after_train",
    ]
    (tmp_path / "state.json").write_text(json.dumps({"version": 2, "migrations": migrations, "rounds": rounds}))
    state = RunState.load(tmp_path)
    assert state.migrations[-2:] == ["m005_review_after_aggregate", "m006_eval_after_publish"]
    assert state.finished_rounds() == [1] and state.next_phase(2) == "aggregate"
    review = state.record(1, "review")
    assert review.summary == {} and review.keys is None and state.record(1, "publish").keys is None
    assert state.record(1, "aggregate").keys == keys
    assert state.round_output(1) == tmp_path / "round-1" / "output.parquet", "nothing reviewed: aggregate's"
    assert state.round_decisions(1).name == "decisions.jsonl"
    assert PHASES_BY_NAME["review"].summary_from({}).queued == 0, "the empty summary reads back"
    state.rounds[1]["review"].summary = {"rewritten": True, "queued": 2}
    assert state.round_output(1).name == "reviewed.parquet" and state.round_decisions(1).name == "reviewed.jsonl"


def test_invalidate_forgets_the_phase_what_follows_and_later_rounds(tmp_path: Path) -> None:
    state = RunState.load(tmp_path)
    for n in (1, 2):
        for phase in PHASES:
            state.mark_done(n, phase, "h", 0.1)
    dropped = state.invalidate(1, PHASES[PHASES.index("pull") :])
    assert dropped[:5] == [(1, "pull"), (1, "aggregate"), (1, "review"), (1, "publish"), (1, "eval")]
    assert {n for n, _ in dropped[5:]} == {2}
    reloaded = RunState.load(tmp_path)
    assert reloaded.next_phase(1) == "pull" and 2 not in reloaded.rounds

