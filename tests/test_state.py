from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.errors import StateError
from loop.phases import PHASE_NAMES as PHASES
from loop.state import RunState


def test_new_run_starts_at_round_one_train(tmp_path: Path) -> None:
    state = RunState.load(tmp_path)
    assert state.current_round() == 1
    assert state.next_phase(1) == "train"
    assert not (tmp_path / "state.json").exists()


def test_phases_are_recorded_in_order_and_persisted(tmp_path: Path) -> None:
    state = RunState.load(tmp_path)
    state.mark_done(1, "train", "h1", 1.5, {"final_loss": 0.1})
    with pytest.raises(StateError, match="cannot finish 'push' before generate"):
        state.mark_done(1, "push", "h3", 1.0)
    reloaded = RunState.load(tmp_path)
    assert reloaded.is_done(1, "train") and not reloaded.is_done(1, "generate")
    assert reloaded.record(1, "train").summary == {"final_loss": 0.1}
    assert reloaded.next_phase(1) == "generate"
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
