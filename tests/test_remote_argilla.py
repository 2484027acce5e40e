"""A run configured for a remote Argilla deployment: `argilla.api_url`, the owner key in a 0600
`argilla.api_key_file`, and `wait.webhook_url`/`webhook_bind` for the server's webhooks.

The "remote" server is the session's embedded stack (tests/conftest.py `argilla_stack`), reached only
through the config: no `ARGILLA_API_KEY`, and an `argilla.home` where no embedded server ever ran. The
push, wait and pull phases run through the driver; simulated labelers (loop/demo/simulate.py) start
labeling once the wait is listening. Train and generate are not under test: their artifacts are
written with the real writers and recorded with `RunState`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from argilla_setup import server
from argilla_setup.connection import Api, Connection
from argilla_setup.users import credentials_file
from loop.annotate import read_plan
from loop.config import load_config
from loop.data import write_jsonl
from loop.demo.data import load_demo_data
from loop.demo.simulate import LabelerStyle, SimulatedLabelers
from loop.driver import Driver
from loop.phases.generate import Candidate, SampleSpec, TurnCandidates, write_candidates
from loop.state import RunState
from loop.status import run_status

N = 5  # FAQ questions in the round


def candidates_for(demo) -> list[TurnCandidates]:
    """What generate would write for a model that learned some answers: a greedy and a sampled one."""
    turns = []
    for ex in demo.examples:
        reference = demo.references[ex.id]
        words = reference.split()
        greedy = Candidate(reference, 1, -0.4, False, [SampleSpec("greedy", None, None, None)])
        sample = Candidate(
            " ".join(words[: max(2, len(words) // 2)]), 1, -1.9, False, [SampleSpec("sample", 1.2, None, 11)]
        )
        turns.append(
            TurnCandidates(ex.id, 0, 1, ex.messages[:1], ex.messages[-1]["content"], -1.2, [greedy, sample])
        )
    return turns


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_push_wait_pull_against_a_remote_server(
    argilla_stack, tmp_path: Path, pickloop_home: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    caplog.set_level(logging.INFO)
    owner_key = argilla_stack.api_key
    tag = uuid.uuid4().hex[:6]

    key_dir = tmp_path / "secrets"
    key_dir.mkdir(mode=0o700)
    key_file = key_dir / "argilla.key"
    key_file.write_text(owner_key + "\n")
    key_file.chmod(0o600)

    demo = load_demo_data(fraction=0.6, seed=0, limit=N)
    data = write_jsonl(demo.examples, tmp_path / "data" / "step1.jsonl")
    hook_port = server.free_port()
    labelers = [f"rl-a-{tag}", f"rl-b-{tag}"]
    local_home = tmp_path / "no-embedded-server"
    cfg_path = tmp_path / "pickloop.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "run": {"name": f"remote-{tag}", "dir": str(tmp_path / "run")},
                "data": {"path": str(data)},
                "model": {"name_or_path": str(tmp_path / "tiny-model")},
                "generate": {"k": 2},
                "argilla": {
                    "api_url": argilla_stack.api_url,
                    "api_key_file": str(key_file),
                    "home": str(local_home),
                    "workspace": f"remote-ws-{tag}",
                    "labelers": labelers,
                    "min_submitted": 1,
                },
                "wait": {
                    "webhook_url": f"http://127.0.0.1:{hook_port}/argilla",
                    "webhook_bind": f"127.0.0.1:{hook_port}",
                    # Only a webhook can end the wait within the test's time: the first poll finds
                    # nothing labeled, the next would be 40 s later.
                    "poll_interval_s": 40,
                    "timeout_s": 55,
                },
            }
        )
    )
    cfg = load_config(cfg_path)

    sim = SimulatedLabelers(
        argilla_stack.api_url,
        local_home,
        labelers,
        demo.references,
        run=cfg.run.name,
        workspace=cfg.argilla.workspace,
        style=LabelerStyle(discard_rate=0.0),
        interval=0.2,
    )
    reports: list[str] = []
    labeling = threading.Event()

    def report(msg: str) -> None:
        reports.append(msg)
        # The wait's first progress line comes after its webhook is registered: labelers start now.
        if "records complete" in msg and not labeling.is_set():
            labeling.set()
            sim.start()

    driver = Driver(cfg, report=report, progress=False)
    paths = driver.paths.round(1)
    write_candidates(candidates_for(demo), paths.candidates)
    state = RunState.load(driver.run_dir)
    state.mark_done(1, "train", "h-train", 1.0, {"examples": N, "final_loss": 1.0})
    state.mark_done(1, "regenerate", "h-regenerate", 0.0, {"skipped": "data.regenerate is not set"})
    state.mark_done(1, "generate", "h-generate", 1.0, {"turns": N, "candidates": 2 * N, "same_as_current": 0})
    state.mark_done(1, "score", "h-score", 0.0, {})  # no scores.parquet: `select.strategy: all` asks every turn

    try:
        pushed = driver.run_phase(1, "push").summary
        assert pushed.records == N and pushed.dataset == f"{cfg.run.name}-round-1"
        with Api(Connection(argilla_stack.api_url, owner_key)) as owner:
            ds = owner.dataset_by_name(pushed.dataset, cfg.argilla.workspace)
            assert ds is not None and str(ds["id"]) == pushed.dataset_id
            listed = owner.get(f"/api/v1/datasets/{pushed.dataset_id}/records", params={"limit": 50})
            assert listed["total"] == N
            plan = read_plan(paths.dir)
            assert {r["external_id"] for r in listed["items"]} == {p.external_id for p in plan}
        # The labelers' accounts were made on the remote server, their credentials under argilla.home.
        for name in labelers:
            assert json.loads(credentials_file(name, local_home).read_text())["api_key"] != owner_key
        # `pickloop status` reads live progress from the remote server while the round is in labeling.
        (live,) = run_status(driver, live=True)
        assert (live.phase, live.labeling) == ("wait", f"0/{N} records complete")
        assert live.labelers == tuple((name, 0) for name in labelers)  # listed before their first answer

        waited = driver.run_phase(1, "wait").summary
        assert labeling.is_set()
        assert (waited.reason, waited.completed, waited.total) == ("completed", N, N)
        assert waited.webhook_events >= 1 and waited.wait_s < 35
        sim.stop()
        assert sim.error is None
        pulled = driver.run_phase(1, "pull").summary
    finally:
        if sim.is_alive():
            sim.stop()

    sent = sum(s.submitted for s in sim.stats.values())
    assert pulled.records == N and pulled.submitted == sent >= N and pulled.discarded == 0
    responses = [json.loads(line) for line in paths.responses.read_text().splitlines()]
    assert len(responses) == pulled.responses == sent
    body = json.loads(paths.pulled.read_text())
    assert len(body["records"]) == N
    assert sum(len(v) for v in body["responses"].values()) == sent
    pulled_responses = [r for v in body["responses"].values() for r in v]
    assert {r["annotator"] for r in pulled_responses} <= set(labelers)
    assert all(len(r["ranking"]) >= 2 for r in pulled_responses)  # the ranks came back with the slots

    with Api(Connection(argilla_stack.api_url, owner_key)) as owner:
        hooks = owner.get("/api/v1/webhooks")["items"]
    assert not [h for h in hooks if h.get("description") == f"pickloop:{cfg.run.name}:round-1"]
    # No embedded server was started or asked for: its home holds only the labelers' credentials.
    assert not (local_home / "owner.json").exists()
    assert {p.relative_to(local_home).parts[0] for p in files_under(local_home)} <= {"users"}

    # The owner key is in the key file and nowhere else this run wrote, printed or logged.
    written = files_under(tmp_path / "run", local_home, pickloop_home, tmp_path / "data") + [cfg_path]
    assert len(written) > 8
    leaked = [str(p) for p in written if owner_key.encode() in p.read_bytes()]
    assert leaked == []
    out = capsys.readouterr()
    assert owner_key not in out.out + out.err + caplog.text + "\n".join(reports)
