"""The simulated labelers against the real embedded Argilla: they only label published datasets."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from argilla_setup import rankings, users
from argilla_setup.connection import Api, Connection
from loop.demo.simulate import SimulatedLabelers, _reason


def test_a_dataset_still_in_draft_is_not_labeled(argilla_stack, tmp_path: Path) -> None:
    """The push creates a dataset as a draft and publishes it once its fields and questions exist;
    its search index exists only from then on. Labelers that looked at the draft got HTTP 500
    (`IndexNotFoundError: no such index`) from the records search, or no ranking question."""
    tag = uuid.uuid4().hex[:6]
    run, ws, name = f"sim-{tag}", f"sim-{tag}", f"sim-l-{tag}"
    with Api(Connection(argilla_stack.api_url, argilla_stack.api_key)) as owner:
        users.add_users(owner, [name], workspace=ws, create_workspace=True, home=tmp_path)
        ws_id = owner.workspace_by_name(ws)["id"]
        draft = owner.post("/api/v1/datasets", json={"name": f"{run}-round-1", "workspace_id": ws_id})
    assert draft["status"] == "draft"
    sim = SimulatedLabelers(argilla_stack.api_url, tmp_path, [name], {}, run=run, workspace=ws)
    with sim._api(name) as api:
        # What the labelers used to do with it: the server has no search index for a draft.
        with pytest.raises(Exception, match="no such index|500"):
            rankings.pending_records(api, draft["id"])
        assert sim.round_datasets(api) == []
    assert sim.label_once() == 0


def test_a_failure_without_a_message_is_logged_by_its_type() -> None:
    assert _reason(StopIteration()) == "StopIteration"
    assert _reason(ValueError("bad")) == "ValueError: bad"


def test_simulated_judge_prefers_the_answer_closer_to_the_reference() -> None:
    from loop.demo.simulate import judge

    ref = "Python compiles source to bytecode"
    assert judge("it compiles to bytecode", "no idea", ref) == "a"
    assert judge("no idea", "Python compiles source to bytecode", ref) == "b"
    assert judge("same words", "same  WORDS", ref) == "tie"  # equal token F1 (0 and 0)
