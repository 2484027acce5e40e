"""The optional `eval` phase after publish (`loop.phases.evaluate`): off by default a no-op that
touches nothing (the Argilla URL here refuses connections), its model list, its config checks, and the
state migration for rounds published before it existed. The phase running a real evaluation is in
tests/test_eval_flow.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from state_fixtures import placeholder_summary

from loop.config import load_config
from loop.context import RoundContext
from loop.driver import Driver
from loop.errors import ConfigError
from loop.paths import RunPaths
from loop.phases import PHASE_NAMES, PHASES
from loop.phases import evaluate as phase
from loop.state import RunState


def _config(tmp_path: Path, **eval_settings) -> Path:
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "q0", "question": "Why?", "answer": "Because."}) + "\n")
    cfg = {
        "run": {"name": "ev", "dir": str(tmp_path / "run")},
        "data": {"path": str(tmp_path / "data.jsonl")},
        "model": {"name_or_path": "m"},
        "argilla": {"api_url": "http://127.0.0.1:9"},
        "eval": eval_settings,
    }
    path = tmp_path / "pickloop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _ctx(config: Path, n: int) -> RoundContext:
    cfg = load_config(config)
    return RoundContext(cfg, n, RunPaths(cfg.run_dir()), progress=False)


def test_the_phase_is_last_and_off_by_default_a_no_op(tmp_path: Path) -> None:
    assert PHASE_NAMES[-2:] == ("publish", "eval")
    config = _config(tmp_path)
    ctx = _ctx(config, 1)
    s = phase.run(ctx)
    assert not s.evaluated and s.skipped and s.name is None
    assert not (ctx.run.dir / "eval").exists(), "nothing written"
    # listed rounds only: round 2 of `after_rounds: [1, 3]` is a no-op too
    config = _config(tmp_path, path=str(tmp_path / "q.jsonl"), after_rounds=[1, 3])
    s = phase.run(_ctx(config, 2))
    assert not s.evaluated and "round 2 is not in eval.after_rounds" in s.skipped
    assert not (ctx.run.dir / "eval").exists()
    # the driver records it like any phase; the next round then may start
    config = _config(tmp_path, path=str(tmp_path / "q.jsonl"), after_rounds=[3])
    driver = Driver(load_config(config), progress=False)
    state = driver.state()
    for name in PHASE_NAMES[:-1]:
        state.mark_done(1, name, f"h-{name}", 0.0, {})
    assert driver.state().finished_rounds() == []
    outcome = driver.run_phase(1, "eval")
    assert not outcome.skipped and outcome.summary.skipped and not outcome.summary.evaluated
    assert driver.state().finished_rounds() == [1] and driver.state().current_round() == 2
    assert not (ctx.run.dir / "eval").exists()


def test_default_models_are_base_the_rounds_evaluated_before_and_this_one(tmp_path: Path) -> None:
    config = _config(tmp_path, path=str(tmp_path / "q.jsonl"), after_rounds=[1, 3, 4])
    state = RunState.load(load_config(config).run_dir())
    state.mark_done(1, "train", "h", 0.0)  # only its phases up to eval matter here
    for n, evaluated in ((1, True), (2, False), (3, True)):
        for name in PHASE_NAMES:
            summary = {"evaluated": evaluated} if name == "eval" else {}
            state.mark_done(n, name, f"h{n}{name}", 0.0, summary)
    assert phase.models_for(_ctx(config, 1)) == ["base", "round-1"]
    assert phase.models_for(_ctx(config, 4)) == ["base", "round-1", "round-3", "round-4"]
    config = _config(tmp_path, path=str(tmp_path / "q.jsonl"), every_round=True, models=["round-2", "base"])
    assert phase.models_for(_ctx(config, 4)) == ["round-2", "base", "round-4"], "this round always added"
    assert phase.models_for(_ctx(config, 2)) == ["round-2", "base"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"every_round": True}, "the eval phase needs questions: set eval.path or eval.holdout_fraction"),
        ({"after_rounds": [1]}, "the eval phase needs questions"),
        ({"holdout_fraction": 0.1, "every_round": True, "after_rounds": [2]}, "either every_round or after_rounds"),
        ({"holdout_fraction": 0.1, "after_rounds": [0]}, "eval.after_rounds"),
        ({"holdout_fraction": 0.1, "models": ["base", "latest"]}, "unknown model 'latest'; name base or round-N"),
    ],
)
def test_bad_eval_phase_settings_are_one_clear_line(tmp_path: Path, settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_config(_config(tmp_path, **settings))
    assert "pickloop.yaml" in str(err.value) and "\n" not in str(err.value).strip()


def test_a_round_published_before_the_eval_phase_resumes(tmp_path: Path) -> None:
    """m006: rounds whose publish is done get `eval` done as a no-op; the driver adopts its hash and
    the next round's (chained on it), so the run resumes instead of being refused."""
    rec = {"status": "done", "inputs_hash": "h", "finished_at": "2026-01-01T00:00:00+00:00", "seconds": 2.0}
    keys = {"run.seed": "abc"}
    old = [p for p in PHASES if p != "eval"]
    rounds = {
        "1": {p: {**rec, "summary": {}, "keys": keys} for p in old},  # finished
        "2": {p: {**rec, "summary": {}, "keys": keys} for p in old[: old.index("aggregate") + 1]},
    }
    migrations = [
        "m001_split_aggregate_from_pull",
        "m002_per_key_hashes",
        "m003_score_before_push",
        "m004_regenerate_after_train",
        "m005_review_after_aggregate",
    ]
    (tmp_path / "state.json").write_text(json.dumps({"version": 2, "migrations": migrations, "rounds": rounds}))
    state = RunState.load(tmp_path)
    assert state.migrations[-1] == "m006_eval_after_publish"
    assert state.finished_rounds() == [1] and state.next_phase(2) == "review"
    ev = state.record(1, "eval")
    assert ev.keys is None and ev.seconds == 0.0 and "before the eval phase" in ev.summary["skipped"]
    assert ev.inputs_hash == state.record(1, "publish").inputs_hash, "round 2's chain is unchanged"
    assert state.record(1, "publish").keys == keys
    assert PHASES["eval"].summary_from(ev.summary).evaluated is False
    assert RunState.load(tmp_path).rounds == state.rounds, "applied once and saved"


def test_a_migrated_eval_is_adopted_by_the_driver(tmp_path: Path) -> None:
    """Through the driver: a finished round 1 from before the phase, round 2 trained on top of it."""
    config = _config(tmp_path)
    driver = Driver(load_config(config), progress=False)
    state = driver.state()
    for n in (1, 2):
        for name in PHASE_NAMES[:-1] if n == 1 else ("train",):
            want, keys = driver.inputs_hash(n, PHASES[name], state)
            state.mark_done(n, name, want, 0.0, placeholder_summary(name), keys=keys)
    raw = json.loads((driver.run_dir / "state.json").read_text())
    raw["migrations"].remove("m006_eval_after_publish")
    (driver.run_dir / "state.json").write_text(json.dumps(raw))
    for name in PHASE_NAMES:
        assert driver.run_phase(1, name).skipped, name
    assert driver.run_phase(2, "train").skipped, "round 2 resumes"


def test_preflight_checks_argilla_only_for_an_eval_that_will_run(tmp_path: Path, monkeypatch) -> None:
    from loop.errors import PickloopError
    from loop.preflight import preflight

    monkeypatch.setenv("ARGILLA_API_KEY", "k")
    off = load_config(_config(tmp_path, path=str(tmp_path / "q.jsonl"), after_rounds=[2]))
    preflight(off, off.run_dir(), [(1, "eval")], has_input=True)  # a no-op round: nothing to reach
    with pytest.raises(PickloopError, match="127.0.0.1:9"):
        preflight(off, off.run_dir(), [(2, "eval")], has_input=True)
