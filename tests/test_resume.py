"""Kill-and-resume: the driver is SIGKILLed inside each phase in turn and re-run; the end state must
equal an uninterrupted run's: no duplicate Argilla records, no lost or double-counted responses,
exactly one revision per round, and no re-training of a finished round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from driver_fixtures import make_config
from ml_fixtures import tiny_model  # noqa: F401

from argilla_setup.connection import Api, Connection
from loop.config import load_config
from loop.data import load_examples
from loop.demo.simulate import LabelerStyle, SimulatedLabelers
from loop.driver import Driver
from loop.phases import PHASE_NAMES as PHASES

pytestmark = pytest.mark.slow


def run_driver(config: Path, kill_at: str | None = None, delay: float = 0.0, timeout: float = 400) -> int:
    """`pickloop run CONFIG` in a fresh process; with `kill_at`, SIGKILL it `delay` seconds after it
    announces that phase. Returns the exit code (-9 when killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop.cli", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if kill_at and line.strip() == kill_at:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("driver did not finish:\n" + "".join(lines[-30:]))
    code = proc.wait(timeout=60)
    if kill_at is None and code != 0:
        raise AssertionError("driver failed:\n" + "".join(lines[-40:]))
    return code


def final_state(config: Path, api_url: str, api_key: str) -> dict:
    cfg = load_config(config)
    driver = Driver(cfg, progress=False)
    state = driver.state()
    out: dict = {"rounds": {}}
    with Api(Connection(api_url, api_key)) as api:
        for n in sorted(state.rounds):
            ds = api.dataset_by_name(f"{cfg.run.name}-round-{n}", cfg.argilla.workspace)
            records = api.get(
                f"/api/v1/datasets/{ds['id']}/records", params={"include": "responses", "limit": 1000}
            )
            per_user = {}
            for rec in records["items"]:
                for resp in rec["responses"]:
                    per_user[resp["user_id"]] = per_user.get(resp["user_id"], 0) + 1
            out["rounds"][n] = {
                "records": records["total"],
                "external_ids": sorted(r["external_id"] for r in records["items"]),
                "responses_per_user": sorted(per_user.values()),
                "phases": sorted(state.rounds[n]),
            }
    index = json.loads((driver.run_dir / "revisions" / "revisions.json").read_text())
    out["revisions"] = sorted(index["revisions"])
    return out


@pytest.fixture
def labelers_for(argilla_stack, pickloop_home):
    started = []

    def start(config: Path) -> SimulatedLabelers:
        cfg = load_config(config)
        refs = {ex.id: ex.messages[-1]["content"] for ex in load_examples(cfg.data.path)}
        sim = SimulatedLabelers(
            argilla_stack.api_url,
            pickloop_home / "argilla",
            cfg.argilla.labelers,
            refs,
            run=cfg.run.name,
            workspace=cfg.argilla.workspace,
            style=LabelerStyle(discard_rate=0.0),
            interval=0.2,
        )
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def test_kill_in_every_phase_then_resume(
    argilla_stack, tiny_model, tmp_path, monkeypatch, labelers_for
) -> None:  # noqa: F811
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_stack.api_key)
    straight = make_config(tmp_path / "straight", tiny_model, argilla_stack.api_url)
    labelers_for(straight)
    run_driver(straight)
    expected = final_state(straight, argilla_stack.api_url, argilla_stack.api_key)
    assert expected["revisions"] == ["round-1", "round-2"]
    assert all(r["records"] == 6 for r in expected["rounds"].values())

    resumed = make_config(tmp_path / "resumed", tiny_model, argilla_stack.api_url)
    cfg = load_config(resumed)
    driver = Driver(cfg, progress=False)
    sim = None
    inside, outside = [], []
    for n in (1, 2):
        for phase in PHASES:
            if phase == "wait" and sim is None:
                # Labelers join only after the first kill inside `wait`, so that kill lands mid-wait.
                assert run_driver(resumed, kill_at=f"round {n}: wait", delay=1.0) == -9
                assert not driver.state().is_done(n, "wait")
                sim = labelers_for(resumed)
                continue
            delay = {"train": 1.5, "push": 0.2, "wait": 0.1}.get(phase, 0.0)
            code = run_driver(resumed, kill_at=f"round {n}: {phase}", delay=delay)
            assert code in (-9, 0)
            # Proof the kill landed inside the phase: right after it, the phase is not recorded done.
            (inside if code == -9 and not driver.state().is_done(n, phase) else outside).append(f"{n}:{phase}")
        if n == 1:
            trained_at = (driver.paths.round(1).dir / "model" / "train_config.json").stat().st_mtime_ns
    # Training is always hit mid-way; a quick phase may finish before the signal lands.
    assert {"1:train", "2:train"} <= set(inside), (inside, outside)
    assert len(inside) >= len(inside + outside) // 2, (inside, outside)
    run_driver(resumed)
    got = final_state(resumed, argilla_stack.api_url, argilla_stack.api_key)

    # Same shape as the uninterrupted run: record counts, responses, revisions, phases.
    assert got["revisions"] == expected["revisions"]
    for n in (1, 2):
        assert got["rounds"][n]["records"] == expected["rounds"][n]["records"]
        assert len(set(got["rounds"][n]["external_ids"])) == got["rounds"][n]["records"]
        assert got["rounds"][n]["responses_per_user"] == expected["rounds"][n]["responses_per_user"]
        assert got["rounds"][n]["phases"] == sorted(PHASES)
    # Round 1 was not trained again after it finished.
    assert (driver.paths.round(1).dir / "model" / "train_config.json").stat().st_mtime_ns == trained_at
    # Exactly one revision per round in the local store's folder, and the pulled data was published once.
    store = driver.run_dir / "revisions"
    assert sorted(p.name for p in store.iterdir() if p.is_dir() and p.name.startswith("round-")) == [
        "round-1",
        "round-2",
    ]
    # Its preference rows are exactly what the pulled rankings give (a killed publish rebuilt the same).
    from datasets import load_dataset

    from loop.annotate import shuffle_key
    from loop.preferences import read_round

    for n in (1, 2):
        inputs = driver.paths.round(1).input if n == 1 else driver.paths.round(n - 1).output
        rebuilt = read_round(
            driver.paths.round(n).pulled, load_examples(inputs), n, min_submitted=cfg.argilla.min_submitted
        ).pseudonymised(shuffle_key())
        folder = store / f"round-{n}"
        if rebuilt.pairs:
            assert load_dataset(str(folder), "preferences", split="train").to_list() == rebuilt.pairs
        else:
            assert not (folder / "preferences").exists()
