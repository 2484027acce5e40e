"""Replay (`train.replay`, `loop/replay.py`): changed examples vs the pool of unchanged ones, each
mode's choice, clamping, the train phase training on changed + replayed, and the setting's hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_fixtures import fast_settings, tiny_model, train_examples, trained_round  # noqa: F401

from loop.config import ReplaySettings, RunConfig
from loop.context import RoundContext
from loop.data import Example, to_rows
from loop.paths import RunPaths
from loop.replay import PoolEntry, build_pool, choose, example_ifd, read_replay


def qa(ex_id: str, answer: str) -> Example:
    return Example(ex_id, [{"role": "user", "content": f"Q {ex_id}?"}, {"role": "assistant", "content": answer}])


def test_changed_examples_are_trained_and_unchanged_ones_pooled() -> None:
    previous = [qa("a", "old a"), qa("b", "same b"), qa("c", "same c")]
    current = [qa("a", "new a"), qa("b", "same  b"), qa("c", "same c"), qa("new", "n")]
    changed, pool = build_pool(previous, current, 1)
    # a changed; b differs only in whitespace (unchanged); "new" was not in the previous input.
    assert [ex.id for ex in changed] == ["a", "new"]
    assert [(e.example.id, e.source_round) for e in pool] == [("b", 1), ("c", 1)]
    assert pool[0].example is current[1], "the pool holds this round's version"
    assert build_pool([], current, 1) == (current, [])


def test_example_ifd_is_the_mean_over_its_assistant_turns() -> None:
    ex = Example("m", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 2)
    assert example_ifd(ex, {("m", 1): 0.5, ("m", 3): 1.0}) == 0.75
    assert example_ifd(ex, {("m", 1): 0.5, ("m", 3): None}) == 0.5
    assert example_ifd(ex, {}) is None


POOL = [PoolEntry(qa(f"e{i}", "x"), 1, ifd) for i, ifd in enumerate([0.9, 0.1, None, 0.5, 0.7, 0.3])]


def picked(mode: str, **kw) -> list[str]:
    return [e.example.id for e in choose(POOL, mode, **kw).chosen]


def test_each_mode_chooses_by_ifd() -> None:
    assert picked("hard", k=2) == ["e0", "e4"]
    assert picked("easy", k=2) == ["e1", "e5"]
    # Sorted ascending (None last): e1 .1, e5 .3, e3 .5, e4 .7, e0 .9, e2 None; k=3 takes positions
    # floor(0.5*6/3)=1, floor(1.5*6/3)=3, floor(2.5*6/3)=5.
    assert picked("even", k=3) == ["e5", "e4", "e2"]
    assert picked("hard", k=6)[-1] == "e2" and picked("easy", k=6)[-1] == "e2", "no IFD sorts last"
    assert picked("all") == [f"e{i}" for i in range(6)]
    assert picked("none", k=2) == []
    assert picked("hard", fraction=0.5) == ["e0", "e4", "e3"]
    assert picked("hard", fraction=0.01) == ["e0"], "a fraction rounds up"


def test_random_is_deterministic_by_seed() -> None:
    first = picked("random", k=3, seed=7)
    assert first == picked("random", k=3, seed=7) and len(set(first)) == 3
    assert any(picked("random", k=3, seed=s) != first for s in range(1, 5))


def test_a_k_above_the_pool_replays_it_all_with_a_warning() -> None:
    replay = choose(POOL, "easy", k=50)
    assert len(replay.chosen) == 6 and replay.pool == 6
    assert replay.warnings == ["train.replay.k 50 is more than the 6 unchanged examples in the pool: replaying them all"]
    assert choose([], "hard", k=3).chosen == [] and choose(POOL, "hard", k=6).warnings == []


def test_replay_settings_are_checked_at_load() -> None:
    from pydantic import ValidationError

    assert ReplaySettings().mode == "all", "the default trains on everything, as before replay existed"
    for bad in (
        {"mode": "hard"},
        {"mode": "all", "k": 2},
        {"mode": "none", "fraction": 0.5},
        {"mode": "easy", "k": 2, "fraction": 0.5},
    ):
        with pytest.raises(ValidationError):
            ReplaySettings(**bad)


def test_changing_replay_changes_the_train_phase_hash(tmp_path: Path) -> None:
    from loop.phases import PHASES

    assert "train" in PHASES["train"].keys, "train.replay is hashed with the train section"
    a = _config(tmp_path, Path("tiny"), ReplaySettings())
    b = _config(tmp_path, Path("tiny"), ReplaySettings(mode="hard", k=2))
    from loop.config import config_hash

    assert config_hash(a.train) != config_hash(b.train)


def _config(tmp_path: Path, tiny: Path, replay: ReplaySettings) -> RunConfig:
    settings = fast_settings(num_train_epochs=1).model_copy(update={"replay": replay})
    return RunConfig(
        run={"name": "replay", "dir": str(tmp_path / "run")},
        data={"path": str(tmp_path / "data.jsonl")},
        model={"name_or_path": str(tiny)},
        train=settings,
    )


def _round_two(tmp_path: Path, trained_round, changed: dict[str, str]) -> RunPaths:  # noqa: F811
    """A run dir whose round 1 is done: input, output with `changed` answers, the trained model."""
    import datasets

    from loop.data import write_jsonl

    run = RunPaths(tmp_path / "run")
    r1 = run.round(1)
    r1.dir.mkdir(parents=True)
    write_jsonl(train_examples(), r1.input)
    out = [
        Example(ex.id, [*ex.messages[:-1], {"role": "assistant", "content": changed[ex.id]}])
        if ex.id in changed
        else ex
        for ex in train_examples()
    ]
    datasets.Dataset.from_list(to_rows(out)).to_parquet(str(r1.output))
    r1.model.symlink_to(trained_round.model.round_dir, target_is_directory=True)
    return run


def test_the_scorer_round_reuses_the_previous_rounds_scores(tmp_path: Path, trained_round, tiny_model) -> None:  # noqa: F811
    from loop.phases.score import TurnScores, write_scores
    from loop.phases.train import replay_for

    examples = train_examples()
    changed = {ex.id: f"A better answer for {ex.id}." for ex in examples[3:]}  # the first 3 are kept
    run = _round_two(tmp_path, trained_round, changed)
    ids = [ex.id for ex in examples[:3]]
    scores = [TurnScores(i, 0, 1, ifd_round=v) for i, v in zip(ids, [0.2, 0.8, 0.5], strict=True)]
    write_scores(scores, run.round(1).scores)
    cfg = _config(tmp_path, tiny_model, ReplaySettings(mode="hard", k=2))
    ctx = RoundContext(cfg, 2, run, progress=False)
    replay = replay_for(ctx, ctx.examples())
    assert replay.pool == 3 and len(replay.changed) == len(examples) - 3
    assert [(e.example.id, e.source_round, e.ifd) for e in replay.chosen] == [(ids[1], 1, 0.8), (ids[2], 1, 0.5)]


def test_round_two_trains_on_changed_plus_replayed(tmp_path: Path, trained_round, tiny_model) -> None:  # noqa: F811
    from loop.phases import train

    examples = train_examples()
    kept = [ex.id for ex in examples[:7]]
    run = _round_two(tmp_path, trained_round, {ex.id: f"A better answer for {ex.id}." for ex in examples[7:]})
    messages: list[str] = []
    cfg = _config(tmp_path, tiny_model, ReplaySettings(mode="hard", k=2))
    summary = train.run(RoundContext(cfg, 2, run, report=messages.append, progress=False))
    n = len(examples)
    assert (summary.examples, summary.changed, summary.replayed, summary.replay_pool) == (n, n - 7, 2, 7)
    assert summary.trained == n - 7 + 2
    rows = read_replay(run.round(2).replay)
    assert {r["example_id"] for r in rows} <= set(kept) and {r["source_round"] for r in rows} == {1}
    ifds = [r["ifd"] for r in rows]  # scored under round 1's model: no scores.parquet to reuse
    assert all(isinstance(v, float) for v in ifds) and ifds == sorted(ifds, reverse=True)
    metrics = json.loads((run.round(2).model / "metrics.json").read_text())
    assert metrics["num_examples"] == n - 7 + 2, "the changed examples plus 2 replayed ones"
    assert any(f"training on {n - 7} changed examples and 2 of 7 unchanged ones (hard)" in m for m in messages)


def test_a_k_above_the_pool_and_nothing_changed(tmp_path: Path, trained_round, tiny_model) -> None:  # noqa: F811
    from loop.phases.train import replay_for

    run = _round_two(tmp_path, trained_round, {})
    ctx = RoundContext(_config(tmp_path, tiny_model, ReplaySettings(mode="random", k=50)), 2, run, progress=False)
    replay = replay_for(ctx, ctx.examples())
    assert replay.changed == [] and len(replay.chosen) == replay.pool == len(train_examples())
    assert replay.warnings == [f"train.replay.k 50 is more than the {replay.pool} unchanged examples in the pool: replaying them all"]
    ctx = RoundContext(_config(tmp_path, tiny_model, ReplaySettings(mode="all")), 2, run, progress=False)
    assert replay_for(ctx, ctx.examples()) is None, "mode all: train on everything"
    first = RoundContext(_config(tmp_path, tiny_model, ReplaySettings(mode="none")), 1, run, progress=False)
    assert replay_for(first, first.examples()) is None, "round 1 trains on everything"


def test_a_scorer_that_cannot_load_names_the_key(tmp_path: Path, trained_round, tiny_model) -> None:  # noqa: F811
    from loop.errors import ConfigError
    from loop.phases.train import replay_for

    run = _round_two(tmp_path, trained_round, {train_examples()[0].id: "Changed."})
    cfg = _config(tmp_path, tiny_model, ReplaySettings(mode="easy", k=1, scorer=str(tmp_path / "no-scorer")))
    ctx = RoundContext(cfg, 2, run, progress=False)
    with pytest.raises(ConfigError, match="cannot load the replay scorer") as exc:
        replay_for(ctx, ctx.examples())
    assert exc.value.key == "train.replay.scorer"
