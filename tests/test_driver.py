"""End to end: real embedded Argilla, real TRL training of the tiny model, scripted annotators that
answer through the same endpoints the UI uses, and the local revision store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from driver_fixtures import make_config
from ml_fixtures import tiny_model  # noqa: F401

from argilla_setup import rankings, schema
from argilla_setup.connection import Api, Connection
from argilla_setup.users import credentials_file
from loop.annotate import read_plan, read_push
from loop.cli import cli
from loop.config import load_config
from loop.driver import Driver
from loop.errors import StateError
from loop.revisions import load_round


def annotator_api(api_url: str, name: str) -> Api:
    creds = json.loads(credentials_file(name).read_text())
    return Api(Connection(api_url, creds["api_key"]))


def record_ids(api: Api, dataset_id: str) -> dict[str, str]:
    records, _ = rankings.pending_records(api, dataset_id, limit=100)
    return {r["external_id"]: r["id"] for r in records}


@pytest.fixture
def env(argilla_stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_stack.api_key)
    return argilla_stack


def test_two_rounds_with_scripted_annotators(env, tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg_path = make_config(tmp_path, tiny_model, env.api_url)
    cfg = load_config(cfg_path)
    heard = []
    driver = Driver(cfg, progress=False, on_phase_done=heard.append)
    first = ("train", "regenerate", "generate", "score", "push")
    for phase in first:
        driver.run_phase(1, phase)
    assert driver.run_phase(1, "train").skipped
    assert [(o.round, o.phase, o.skipped) for o in heard] == [(1, p, False) for p in first]
    assert heard[4].summary.records == 6, "the callback gets the phase's summary"
    assert heard[3].summary.turns == 6 and heard[3].summary.mean_ifd_round is not None
    assert heard[1].summary.skipped == "data.regenerate is not set"
    rd = driver.paths.round(1).dir
    plan = read_plan(rd)
    pushed = read_push(rd)
    assert len(plan) == 6 and pushed.records == 6

    # Re-running the push (as after a crash) upserts: still 6 records.
    state = driver.state()
    state.rounds[1].pop("push")
    state.save()
    driver.run_phase(1, "push")
    with Api(Connection(env.api_url, env.api_key)) as owner:
        assert owner.get(f"/api/v1/datasets/{pushed.dataset_id}/records", params={"limit": 1})["total"] == 6

    a_name, b_name = cfg.argilla.labelers
    slots = schema.slot_names(cfg.generate.k + 1)
    with_model = [r for r in plan if len(r.slots) >= 2]
    assert len(with_model) >= 2, "sampling at high temperature must give distinct candidates"
    rec_model, rec_edit = with_model[0], with_model[1]
    others = [r for r in plan if r not in (rec_model, rec_edit)]
    rec_tie, rec_discard, rec_draft = others[0], others[1], others[2]

    def order(rec, first: str | list[str]) -> list:
        head = [first] if isinstance(first, str) else [first]
        used = set([first] if isinstance(first, str) else first)
        return head + [s for s in slots if s not in used]

    model_slot = next(s for s in rec_model.slots if s != rec_model.original_slot)
    tie_slot = next((s for s in slots if s != rec_tie.original_slot), None)
    a, b = annotator_api(env.api_url, a_name), annotator_api(env.api_url, b_name)
    with a, b:
        a_ids, b_ids = record_ids(a, pushed.dataset_id), record_ids(b, pushed.dataset_id)
        assert set(a_ids) == {r.external_id for r in plan}
        for rec in plan:
            if rec is rec_model:
                a_vals = b_vals = rankings.response_values(order(rec, model_slot))
            elif rec is rec_edit:
                a_vals = rankings.response_values(
                    order(rec, rec.original_slot), better_answer="A labeler's answer."
                )
                b_vals = rankings.response_values(order(rec, rec.original_slot))
            elif rec is rec_tie:
                a_vals = rankings.response_values(order(rec, [rec.original_slot, tie_slot]))
                b_vals = rankings.response_values(order(rec, rec.original_slot))
            else:
                a_vals = b_vals = rankings.response_values(order(rec, rec.original_slot))
            rankings.submit_response(a, a_ids[rec.external_id], a_vals)
            if rec is rec_discard:
                rankings.submit_response(b, b_ids[rec.external_id], None, status="discarded")
            elif rec is rec_draft:
                rankings.submit_response(b, b_ids[rec.external_id], b_vals, status="draft")
            else:
                rankings.submit_response(b, b_ids[rec.external_id], b_vals)

    for phase in ("wait", "pull", "aggregate", "review", "publish", "eval"):
        driver.run_phase(1, phase)
    review = driver.state().record(1, "review").summary
    assert review["reason"] == "not_review" and not review["rewritten"], "keep_current: nothing to review"
    summary = driver.state().record(1, "aggregate").summary
    assert summary["discarded"] == 1 and summary["draft"] == 1 and summary["completed"] == 6
    assert summary["choices"] == {"original": 4, "model": 1, "edited": 1}
    wait = driver.state().record(1, "wait").summary
    assert wait["reason"] == "completed" and wait["completed"] == 6

    published = load_round(1, cfg.publish, run_dir=driver.run_dir)
    rows = {r["id"]: r for r in published}
    assert len(rows) == 6
    expected = {r.example_id: r.slots[r.original_slot].text for r in plan}
    expected[rec_model.example_id] = rec_model.slots[model_slot].text
    expected[rec_edit.example_id] = "A labeler's answer."
    assert {i: r["messages"][-1]["content"] for i, r in rows.items()} == expected
    assert rows[rec_model.example_id]["choice"] == "model"
    assert json.loads(rows[rec_model.example_id]["generation_settings"])["model"].endswith("@round-1")
    assert rows[rec_edit.example_id]["choice"] == "edited"
    assert rows[rec_discard.example_id]["annotator_count"] == 1
    assert (
        rows[rec_tie.example_id]["agreement"] is not None and 0 <= rows[rec_tie.example_id]["agreement"] < 1
    )
    assert all(r["round"] == 1 for r in rows.values())

    status = CliRunner().invoke(cli, ["status", "--offline", str(cfg_path)], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    row1 = next(line for line in status.output.splitlines() if line.strip().startswith("│ 1 "))
    assert "done" in row1 and "round-1" in row1 and "/6 records complete" in row1
    row2 = next(line for line in status.output.splitlines() if line.strip().startswith("│ 2 "))
    assert "train" in row2

    # Round 2 trains on exactly the published round-1 dataset, continuing the round-1 adapter.
    driver.run_phase(2, "train")
    assert [(ex.id, ex.messages) for ex in driver.context(2).examples()] == [
        (r["id"], r["messages"]) for r in published
    ]
    train_cfg = json.loads((driver.paths.round(2).dir / "model" / "train_config.json").read_text())
    assert train_cfg["strategy"] == "continue"
    # Finished phases are skipped; changed settings on a finished phase are refused, not redone.
    assert driver.run_phase(1, "publish").skipped
    cfg.train.sft = {**cfg.train.sft, "learning_rate": 0.5}
    with pytest.raises(StateError, match=r"config key train\.sft\.learning_rate changed.*round redo train"):
        Driver(cfg, progress=False).run_phase(2, "train")
    # `redo` forgets the phase (and what follows), after which the new setting is accepted.
    redone = Driver(cfg, progress=False)
    assert redone.redo(2, "train") == [(2, "train")]
    assert not redone.state().is_done(2, "train") and redone.state().is_done(1, "publish")


def test_phase_order_is_enforced(env, tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg_path = make_config(tmp_path, tiny_model, env.api_url)
    driver = Driver(load_config(cfg_path), progress=False)
    with pytest.raises(StateError, match="run train, regenerate, generate, score before push"):
        driver.run_phase(1, "push")
    # Through the CLI it is one clean line, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "loop.cli", "round", "push", str(cfg_path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: round 1: run train, regenerate, generate, score before push"
    with pytest.raises(StateError, match="round 1 is not finished"):
        driver.run_phase(2, "train")


def test_bad_data_fails_before_anything_is_written(env, tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    from loop.errors import DataError

    cfg_path = make_config(tmp_path, tiny_model, env.api_url)
    data = tmp_path / "data.jsonl"
    lines = data.read_text().splitlines()
    lines[2] = json.dumps({"id": "x", "question": "Q?"})
    data.write_text("\n".join(lines) + "\n")
    driver = Driver(load_config(cfg_path), progress=False)
    with pytest.raises(DataError, match=r"data.jsonl:3.*answer"):
        driver.run_phase(1, "train")
    assert not (driver.run_dir / "state.json").exists()
    assert not (driver.paths.round(1).dir / "model").exists()
