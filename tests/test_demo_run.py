"""The demo's own console lines: the labelers' hand-off once a round is in Argilla."""

from __future__ import annotations

from pathlib import Path

from loop.config import load_config
from loop.demo.run import demo_config_path, handoff
from loop.driver import PhaseOutcome
from loop.phases.push import Summary


def test_handoff_names_the_round_the_sign_in_page_and_the_credential_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PICKLOOP_HOME", str(tmp_path))
    cfg = load_config(demo_config_path())
    outcome = PhaseOutcome(3, "push", False, 1.0, Summary("demo-round-3", "id", 175, None))
    line = handoff(cfg, "http://127.0.0.1:6900", tmp_path / "argilla", outcome)
    assert line.startswith("Round 3 is ready for labelers: 175 records in dataset demo-round-3.")
    assert "http://127.0.0.1:6900/sign-in" in line
    for name in cfg.argilla.labelers:
        assert f"{name}: {tmp_path / 'argilla' / 'users' / name}.json" in line
    assert "password " not in line.lower().replace("passwords in", "")
