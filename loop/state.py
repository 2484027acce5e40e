"""The round state machine, persisted in `<run dir>/state.json`.

A phase is `done` only after its artifact was written (atomically) and the state file was replaced
(atomically), so a process killed at any moment leaves either the old or the new state, never a mix.
Each finished phase records a hash of its inputs plus one short hash per config key it depends on,
so a re-run skips it while nothing changed and names the exact key when something did.

The file format evolves through named migrations (as in llm's `migrations.py`): every load applies
the ones a file has not seen yet, in order, and records their names; old files keep loading.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loop.errors import StateError
from loop.fsutil import write_json
from loop.paths import RoundPaths
from loop.phases import PHASE_NAMES

STATE_FILE = "state.json"
SCHEMA_VERSION = 2

_AGGREGATE_KEYS = (
    "records",
    "completed",
    "changed",
    "choices",
    "discarded",
    "draft",
    "none_acceptable",
    "agreement",
)


@dataclass
class PhaseRecord:
    status: str  # "done"
    inputs_hash: str
    finished_at: str
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    # dotted config key -> short hash of its value; None for records migrated from version 1,
    # whose hashes were computed another way (the driver adopts the current hash for those).
    keys: dict[str, str] | None = None


# --------------------------------------------------------------------------- migrations

Migration = Callable[[dict[str, Any]], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_split_aggregate_from_pull(raw: dict[str, Any]) -> None:
    """Version 1 aggregated inside `pull`; a finished v1 pull is now a pull plus an aggregate."""
    for phases in raw["rounds"].values():
        pull = phases.get("pull")
        if pull and "aggregate" not in phases:
            summary = pull.get("summary") or {}
            phases["aggregate"] = {
                **pull,
                "seconds": 0.0,
                "summary": {k: summary[k] for k in _AGGREGATE_KEYS if k in summary},
            }
            pull["summary"] = {"records": summary.get("records"), "legacy": True}


@migration
def m002_per_key_hashes(raw: dict[str, Any]) -> None:
    """Version 1 stored one hash per phase; mark those records so the driver adopts the new hash."""
    for phases in raw["rounds"].values():
        for rec in phases.values():
            rec.setdefault("keys", None)


@migration
def m003_score_before_push(raw: dict[str, Any]) -> None:
    """The `score` phase now runs between `generate` and `push`: a round pushed before it existed gets
    `score` marked done (empty summary; no `scores.parquet`, so its selection is "every turn", as it
    was). Hashes from `score` on are adopted by the driver (`keys: None`): push now also hashes
    `select` and chains on score's hash, and a run in flight must resume, not be refused."""
    order = list(PHASE_NAMES)
    after = order[order.index("push") :]
    for phases in raw["rounds"].values():
        push = phases.get("push")
        if push and "score" not in phases:
            phases["score"] = {**push, "seconds": 0.0, "summary": {}, "keys": None}
            for name in after:
                if name in phases:
                    phases[name]["keys"] = None


@migration
def m004_regenerate_after_train(raw: dict[str, Any]) -> None:
    """The `regenerate` phase now runs between `train` and `generate`: a round trained before it
    existed gets it marked done as a no-op (it added nothing then), and the hashes of the phases after
    it are adopted by the driver (`keys: None`; generate now chains on regenerate's hash)."""
    order = list(PHASE_NAMES)
    after = order[order.index("regenerate") + 1 :]
    for phases in raw["rounds"].values():
        train = phases.get("train")
        if train and "regenerate" not in phases:
            summary = {"skipped": "the round was trained before the regenerate phase existed"}
            phases["regenerate"] = {**train, "seconds": 0.0, "summary": summary, "keys": None}
            for name in after:
                if name in phases:
                    phases[name]["keys"] = None


@migration
def m005_review_after_aggregate(raw: dict[str, Any]) -> None:
    """The `review` phase now runs between `aggregate` and `publish`: a round aggregated before it
    existed gets `review` marked done with an empty summary (nothing reviewed, so aggregate's output
    stays the round's dataset); publish's hash, now chained on review's, is adopted (`keys: None`)."""
    for phases in raw["rounds"].values():
        agg = phases.get("aggregate")
        if agg and "review" not in phases:
            phases["review"] = {**agg, "seconds": 0.0, "summary": {}, "keys": None}
            if "publish" in phases:
                phases["publish"]["keys"] = None


@migration
def m006_eval_after_publish(raw: dict[str, Any]) -> None:
    """The `eval` phase now runs after `publish`: a round published before it existed gets `eval`
    marked done as a no-op (nothing evaluated, `skipped` says why); its hash, and the next round's train hash
    chained on it, are adopted by the driver (`keys: None`; the chain moved, the settings did not)."""
    for phases in raw["rounds"].values():
        pub = phases.get("publish")
        if pub and "eval" not in phases:
            summary = {"skipped": "the round was published before the eval phase existed"}
            phases["eval"] = {**pub, "seconds": 0.0, "summary": summary, "keys": None}


def migrate(raw: dict[str, Any], path: Path) -> bool:
    """Apply the migrations `raw` has not seen; True when anything changed."""
    version = raw.get("version")
    if version not in (1, SCHEMA_VERSION):
        raise StateError(
            f"{path} has state version {version}; this pickloop reads versions 1-{SCHEMA_VERSION}. "
            "Upgrade pickloop to continue this run"
        )
    applied = raw.setdefault("migrations", [])
    changed = False
    for name, fn in MIGRATIONS:
        if name not in applied:
            fn(raw)
            applied.append(name)
            changed = True
    raw["version"] = SCHEMA_VERSION
    return changed or version != SCHEMA_VERSION


# --------------------------------------------------------------------------- state


@dataclass
class RunState:
    run_dir: Path
    rounds: dict[int, dict[str, PhaseRecord]] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=lambda: [name for name, _ in MIGRATIONS])

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        path = Path(run_dir) / STATE_FILE
        if not path.exists():
            return cls(Path(run_dir))
        try:
            raw = json.loads(path.read_text())
        except ValueError as exc:
            raise StateError(
                f"{path} is not valid JSON ({exc}); it is only written atomically, so it was edited by hand"
            ) from exc
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from exc
        changed = migrate(raw, path)
        rounds = {
            int(n): {name: PhaseRecord(**rec) for name, rec in phases.items()}
            for n, phases in raw["rounds"].items()
        }
        state = cls(Path(run_dir), rounds, list(raw["migrations"]))
        if changed:
            state.save()
        return state

    def save(self) -> None:
        body = {
            "version": SCHEMA_VERSION,
            "migrations": self.migrations,
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
        self,
        round_n: int,
        phase: str,
        inputs_hash: str,
        seconds: float,
        summary: dict | None = None,
        *,
        keys: dict[str, str] | None = None,
    ) -> None:
        order = PHASE_NAMES
        if phase not in order:
            raise StateError(f"unknown phase {phase!r}; phases are {', '.join(order)}")
        missing = [p for p in order[: order.index(phase)] if not self.is_done(round_n, p)]
        if missing:
            raise StateError(f"round {round_n}: cannot finish {phase!r} before {', '.join(missing)}")
        self.rounds.setdefault(round_n, {})[phase] = PhaseRecord(
            "done",
            inputs_hash,
            datetime.now(UTC).isoformat(timespec="seconds"),
            round(seconds, 3),
            summary or {},
            keys,
        )
        self.save()

    def invalidate(self, round_n: int, phases: Sequence[str]) -> list[tuple[int, str]]:
        """Forget `phases` of `round_n` and every phase of later rounds; returns what was forgotten."""
        dropped = [(round_n, p) for p in phases if self.is_done(round_n, p)]
        for p in phases:
            self.rounds.get(round_n, {}).pop(p, None)
        for n in sorted(self.rounds):
            if n > round_n:
                dropped += [(n, p) for p in self.rounds[n]]
                del self.rounds[n]
        self.rounds = {n: ph for n, ph in self.rounds.items() if ph}
        self.save()
        return dropped

    def round_output(self, round_n: int) -> Path:
        """The round's dataset: `reviewed.parquet` when its `review` phase rewrote it, else aggregate's
        `output.parquet`. Read from the state, not from which files exist, so a redone aggregate is
        never shadowed by an older review's file."""
        paths = RoundPaths(self.run_dir, round_n)
        return paths.reviewed if self._reviewed(round_n) else paths.output

    def round_decisions(self, round_n: int) -> Path:
        """The round's decisions file, after the review like `round_output`."""
        paths = RoundPaths(self.run_dir, round_n)
        return paths.reviewed_decisions if self._reviewed(round_n) else paths.decisions

    def _reviewed(self, round_n: int) -> bool:
        rec = self.record(round_n, "review")
        return bool(rec and rec.summary.get("rewritten"))

    def next_phase(self, round_n: int) -> str | None:
        """The first phase of `round_n` not yet done, or None when the round is complete."""
        return next((p for p in PHASE_NAMES if not self.is_done(round_n, p)), None)

    def current_round(self) -> int:
        """The lowest round that is not complete (1 for a new run)."""
        n = 1
        while self.rounds.get(n) and self.next_phase(n) is None:
            n += 1
        return n

    def finished_rounds(self) -> list[int]:
        return [n for n in sorted(self.rounds) if self.next_phase(n) is None]

    def started(self) -> bool:
        return any(self.rounds.values())
