"""Finished phases across pickloop upgrades: a setting added since (at its default) or an earlier
phase that adopted a new hash after a migration must not refuse a run; a real change still must.
State built with the driver's own hashes; no phase runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from state_fixtures import placeholder_summary

from loop.config import default_leaves, load_config
from loop.driver import Driver
from loop.errors import StateError
from loop.phases import PHASE_NAMES, PHASES
from loop.state import RunState


@pytest.fixture
def driver(tmp_path: Path) -> Driver:
    path = tmp_path / "run.yaml"
    cfg = {
        "run": {"name": "h", "dir": str(tmp_path / "run")},
        "data": {"path": "d.jsonl"},
        "model": {"name_or_path": "m"},
        "train": {"sft": {"learning_rate": 0.001}},
    }
    path.write_text(yaml.safe_dump(cfg))
    return Driver(load_config(path), progress=False)


def finish(driver: Driver, rounds: int) -> RunState:
    """Mark `rounds` rounds done with the hashes the driver computes today."""
    state = driver.state()
    for n in range(1, rounds + 1):
        for name in PHASE_NAMES:
            want, keys = driver.inputs_hash(n, PHASES[name], state)
            state.mark_done(n, name, want, 0.0, placeholder_summary(name), keys=keys)
    return state


def test_default_leaves_match_what_an_unset_key_dumps(driver: Driver) -> None:
    defaults = default_leaves()
    for phase in PHASES.values():
        for key, value_hash in driver.key_hashes(1, phase).items():
            if key in defaults and key not in ("run.dir",):
                dumped = driver.config.model_dump(mode="json")
                value = dumped
                for part in key.split("."):
                    value = value[part]
                if value == defaults[key]:
                    assert Driver.changed_keys({key: value_hash}, {}) == [], key


def test_a_setting_added_since_a_phase_finished_is_its_default(driver: Driver) -> None:
    state = finish(driver, 1)
    for name in ("train", "generate", "publish"):
        rec = state.record(1, name)
        added = next(k for k in rec.keys if k.startswith(name[:3]) and k != "train.sft.learning_rate")
        del rec.keys[added]  # as if the key did not exist when the phase ran
        rec.inputs_hash = "older-version"
    state.save()
    for name in PHASE_NAMES:
        assert driver.run_phase(1, name).skipped, name
    again = RunState.load(driver.run_dir)
    assert again.record(1, "generate").inputs_hash == driver.inputs_hash(1, PHASES["generate"], again)[0]


def test_a_migrated_phase_adopts_and_later_rounds_follow(driver: Driver) -> None:
    """m003-m005 mark phases `keys: None`: the driver adopts today's hash for them; a later round,
    chained on that hash, resumes too."""
    state = finish(driver, 2)
    state.record(1, "publish").keys = None
    state.record(1, "publish").inputs_hash = "adopt-me"
    state.record(2, "train").inputs_hash = "chained-on-the-old-hash"
    state.save()
    for n in (1, 2):
        for name in PHASE_NAMES:
            assert driver.run_phase(n, name).skipped


def test_a_real_change_is_still_refused_and_named(driver: Driver) -> None:
    finish(driver, 1)
    driver.config.train.sft["learning_rate"] = 0.01
    with pytest.raises(StateError, match=r"config key train\.sft\.learning_rate changed"):
        driver.run_phase(1, "train")
    driver.config.train.sft["learning_rate"] = 0.001
    driver.config.generate.k = driver.config.generate.k + 1  # a default key set to another value
    with pytest.raises(StateError, match=r"config key generate\.k changed"):
        driver.run_phase(1, "generate")
