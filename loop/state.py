"""The round state machine, persisted in `<run dir>/state.json`.

Phases run in order: train → generate → push → wait → pull → publish. A phase is `done` only after
its artifact was written (atomically) and the state file was replaced (atomically), so a process
killed at any moment leaves either the old or the new state, never a mix. Each finished phase records
a hash of its inputs and settings: a re-run skips it while the hash matches and says what changed
when it does not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loop.errors import StateError
from loop.fsutil import write_json

PHASES: tuple[str, ...] = ("train", "generate", "push", "wait", "pull", "publish")
STATE_FILE = "state.json"
SCHEMA_VERSION = 1


@dataclass
class PhaseRecord:
    status: str  # "done"
    inputs_hash: str
    finished_at: str
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


@dataclass
class RunState:
    run_dir: Path
    rounds: dict[int, dict[str, PhaseRecord]] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        path = run_dir / STATE_FILE
        if not path.exists():
            return cls(run_dir)
        try:
            raw = json.loads(path.read_text())
        except ValueError as exc:
            raise StateError(
                f"{path} is not valid JSON ({exc}); it is only written atomically, so it was edited by hand"
            ) from exc
        if raw.get("version") != SCHEMA_VERSION:
            raise StateError(
                f"{path} has state version {raw.get('version')}, this pickloop reads {SCHEMA_VERSION}"
            )
        rounds = {
            int(n): {name: PhaseRecord(**rec) for name, rec in phases.items()}
            for n, phases in raw["rounds"].items()
        }
        return cls(run_dir, rounds)

    def save(self) -> None:
        body = {
            "version": SCHEMA_VERSION,
            "rounds": {
                str(n): {k: asdict(v) for k, v in ph.items()} for n, ph in sorted(self.rounds.items())
            },
        }
        write_json(self.run_dir / STATE_FILE, body)

    def record(self, round_n: int, phase: str) -> PhaseRecord | None:
        return self.rounds.get(round_n, {}).get(phase)

    def is_done(self, round_n: int, phase: str) -> bool:
        return self.record(round_n, phase) is not None

    def mark_done(
        self, round_n: int, phase: str, inputs_hash: str, seconds: float, summary: dict | None = None
    ) -> None:
        if phase not in PHASES:
            raise StateError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")
        missing = [p for p in PHASES[: PHASES.index(phase)] if not self.is_done(round_n, p)]
        if missing:
            raise StateError(f"round {round_n}: cannot finish {phase!r} before {', '.join(missing)}")
        self.rounds.setdefault(round_n, {})[phase] = PhaseRecord(
            "done",
            inputs_hash,
            datetime.now(UTC).isoformat(timespec="seconds"),
            round(seconds, 3),
            summary or {},
        )
        self.save()

    def next_phase(self, round_n: int) -> str | None:
        """The first phase of `round_n` not yet done, or None when the round is complete."""
        return next((p for p in PHASES if not self.is_done(round_n, p)), None)

    def current_round(self) -> int:
        """The lowest round that is not complete (1 for a new run)."""
        n = 1
        while self.rounds.get(n) and self.next_phase(n) is None:
            n += 1
        return n

    def finished_rounds(self) -> list[int]:
        return [n for n in sorted(self.rounds) if self.next_phase(n) is None]
