"""Phase `regenerate` (`data.regenerate`): in a round after the first, the round's model writes new
pairs from the documents; duplicates of the dataset's questions and ungrounded answers are left out,
and the rest join the round's examples once the phase is done. The round's model is the seed round
(tests/ml_fixtures.py), trained to answer the seed prompt for each chunk of the shipped documents."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import yaml
from ml_fixtures import SEED_DOCS, SEED_TARGETS, seed_round, tiny_model  # noqa: F401

from loop.config import load_config
from loop.data import Example, to_rows
from loop.driver import Driver
from loop.phases import PHASE_NAMES
from loop.state import RunState

EXISTING = [
    Example(
        "e1",
        [
            {"role": "user", "content": "How many batteries does a gadget use?"},
            {"role": "assistant", "content": "Two."},
        ],
    ),
    Example(
        "e2",
        [
            {"role": "user", "content": "What is a widget?"},
            {"role": "assistant", "content": "A small brass tool."},
        ],
    ),
]


def make_driver(tmp_path: Path, tiny: Path, round_model: Path, template_path: str, regenerate: bool = True):
    data = tmp_path / "step1.jsonl"
    data.write_text("".join(json.dumps({"id": e.id, "messages": e.messages}) + "\n" for e in EXISTING))
    cfg = {
        "run": {"name": "regen", "dir": str(tmp_path / "run")},
        "data": {"path": str(data)},
        "model": {"name_or_path": str(tiny), "cpu_threads": 1},
    }
    if regenerate:
        cfg["data"]["regenerate"] = {
            "docs": [str(SEED_DOCS)],
            "pairs_per_chunk": 1,
            "chunk_tokens": 64,
            "overlap_tokens": 8,
            "max_new_tokens": 48,
            "batch_size": 2,
            "prompt_file": template_path,
        }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    driver = Driver(load_config(path), progress=False)
    state = RunState.load(driver.run_dir)
    for phase in PHASE_NAMES:  # round 1 finished (its output: the step-1 data)
        state.mark_done(1, phase, f"h1{phase}", 0.0, {"skipped": "test"} if phase == "regenerate" else {})
    out = driver.paths.round(1).output
    out.parent.mkdir(parents=True)
    datasets.Dataset.from_list(to_rows(EXISTING)).to_parquet(str(out))
    state.mark_done(2, "train", "h2train", 0.0, {})
    model = driver.paths.round(2).model
    model.parent.mkdir(parents=True)
    model.symlink_to(round_model, target_is_directory=True)  # round 2's trained model
    return driver


def test_round_two_adds_new_grounded_pairs(seed_round, tiny_model, tmp_path) -> None:  # noqa: F811
    round_dir, template = seed_round
    driver = make_driver(tmp_path, tiny_model, round_dir, template.path)
    outcome = driver.run_phase(2, "regenerate")
    s = outcome.summary
    assert (s.skipped, s.chunks, s.pairs_generated, s.parse_failures) == (None, 5, 5, 0)
    # chunk 0 repeats e1's question, chunk 2 chunk 1's; chunk 4's answer is not in its chunk
    assert (s.duplicates_removed, s.ungrounded_dropped, s.added) == (2, 1, 2)
    rows = [json.loads(line) for line in driver.paths.round(2).regenerated.read_text().splitlines()]
    assert [(r["question"], r["answer"]) for r in rows] == [SEED_TARGETS[1], SEED_TARGETS[3]]
    assert all(r["id"].endswith("-r2-q0") and r["round"] == 2 and r["generator"] for r in rows)
    # the next phases get the merged examples: in this process, and read back in a new one
    merged = [ex.id for ex in driver.context(2).examples()]
    fresh = [ex.id for ex in Driver(driver.config, progress=False).context(2).examples()]
    assert merged == fresh == ["e1", "e2", rows[0]["id"], rows[1]["id"]]
    assert driver.run_phase(2, "regenerate").skipped
    # redone (e.g. after a retrain): the file is ignored until the phase runs again
    driver.redo(2, "regenerate")
    assert [ex.id for ex in Driver(driver.config, progress=False).context(2).examples()] == ["e1", "e2"]
    again = driver.run_phase(2, "regenerate").summary
    assert again.chunks_reused == 0 and again.added == 2, "a finished run's partial file is gone"


def test_no_op_when_unset_or_before_from_round(seed_round, tiny_model, tmp_path) -> None:  # noqa: F811
    round_dir, template = seed_round
    driver = make_driver(tmp_path, tiny_model, round_dir, template.path, regenerate=False)
    summary = driver.run_phase(2, "regenerate").summary
    assert summary.skipped == "data.regenerate is not set" and summary.added == 0
    assert not driver.paths.round(2).regenerated.exists()
    assert [ex.id for ex in driver.context(2).examples()] == ["e1", "e2"]
    later = tmp_path / "later"
    later.mkdir()
    driver = make_driver(later, tiny_model, round_dir, template.path)
    driver.config.data.regenerate.from_round = 3
    summary = driver.run_phase(2, "regenerate").summary
    assert summary.skipped == "round 2 is before data.regenerate.from_round (3)"


def test_a_new_pair_never_repeats_a_held_out_evaluation_question(seed_round, tiny_model, tmp_path) -> None:  # noqa: F811
    round_dir, template = seed_round
    driver = make_driver(tmp_path, tiny_model, round_dir, template.path)
    held = Example(
        "h1",
        [{"role": "user", "content": SEED_TARGETS[1][0]}, {"role": "assistant", "content": SEED_TARGETS[1][1]}],
    )
    holdout = driver.run_dir / "eval" / "holdout.jsonl"  # what eval.holdout_fraction split off
    holdout.parent.mkdir(parents=True)
    holdout.write_text(json.dumps({"id": held.id, "messages": held.messages}) + "\n")
    s = driver.run_phase(2, "regenerate").summary
    assert (s.duplicates_removed, s.added) == (3, 1)
    rows = [json.loads(line) for line in driver.paths.round(2).regenerated.read_text().splitlines()]
    assert [(r["question"], r["answer"]) for r in rows] == [SEED_TARGETS[3]]
