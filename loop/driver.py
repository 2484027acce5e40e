"""The round driver: runs the phase registry (`loop.phases.REGISTRY`) in order, round after round.

It only orchestrates: hash a phase's config keys and upstream → skip it when done with the same hash,
refuse (naming the changed key) when done with another, else run it and record its summary. Each
phase reads the previous phase's artifact from the round directory and writes its own atomically;
`RunState` records a phase as done only after that, so killing the process at any moment and
re-running resumes at the first phase not done.

Imports no ML library: phases load theirs when they run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loop.config import RunConfig, flatten_leaves
from loop.context import Reporter, RoundContext, argilla_connection, is_main_process, world_size
from loop.errors import StateError
from loop.paths import RunPaths
from loop.phases import PHASE_NAMES, PHASES, Phase
from loop.state import PhaseRecord, RunState

log = logging.getLogger("pickloop.driver")


@dataclass(frozen=True)
class PhaseOutcome:
    round: int
    phase: str
    skipped: bool
    seconds: float
    summary: Any  # the phase's Summary dataclass


class Driver:
    """Runs the phases of a config's rounds against its run directory."""

    def __init__(
        self,
        config: RunConfig,
        *,
        report: Reporter | None = None,
        progress: bool = True,
        simulated_labelers: bool | None = None,
        on_phase_done: Callable[[PhaseOutcome], None] | None = None,
    ):
        """`on_phase_done` hears of every phase that ran (not of skipped ones), after it is recorded:
        the place for a caller's own output (the demo's per-round result, the labelers' hand-off)."""
        self.config = config
        self.run_dir = config.run_dir()
        self.paths = RunPaths(self.run_dir)
        self.report = report or (lambda msg: log.info(msg))
        self.progress = progress
        self.simulated_labelers = simulated_labelers
        self.on_phase_done = on_phase_done
        self._examples: dict[int, list] = {}  # round -> its input (immutable once written)

    def state(self) -> RunState:
        return RunState.load(self.run_dir)

    def context(self, n: int) -> RoundContext:
        ctx = RoundContext(
            self.config,
            n,
            self.paths,
            report=self.report,
            progress=self.progress,
            simulated_labelers=self.simulated_labelers,
        )
        ctx._examples = self._examples.get(n)
        return ctx

    def connection(self):
        return argilla_connection(self.config)

    # -- orchestration ---------------------------------------------------------------------------

    def run(self, max_rounds: int | None = None) -> list[PhaseOutcome]:
        """Run rounds until `max_rounds` (default: the config's), resuming where the last run stopped."""
        last = max_rounds or self.config.run.max_rounds
        outcomes = []
        n = self.state().current_round()
        self.preflight([(m, name) for m in range(n, last + 1) for name in PHASE_NAMES])
        while n <= last:
            for name in PHASE_NAMES:
                outcomes.append(self.run_phase(n, name))
            n += 1
        return outcomes

    def preflight(self, phases: list[tuple[int, str]]) -> None:
        """Check, before anything runs, what the `(round, phase)` pairs not done yet will need (run
        directory, model, data, Argilla, Hub token): a mistake fails now, not after training."""
        from loop.preflight import preflight

        state = self.state()
        pending = [(n, name) for n, name in phases if not state.is_done(n, name)]
        preflight(self.config, self.run_dir, pending, has_input=self.paths.round(1).input.exists())

    def run_phase(self, n: int, name: str) -> PhaseOutcome:
        phase = self._phase(name)
        if world_size() > 1 and name != "train":
            raise StateError(
                f"`{name}` must not run in every process of a distributed launch (WORLD_SIZE="
                f"{world_size()}): only `train` is multi-GPU. Launch `accelerate launch -m loop.cli round "
                "train CONFIG`, then run the other phases once: `pickloop run CONFIG`"
            )
        state = self.state()
        if n > 1 and not state.is_done(n - 1, PHASE_NAMES[-1]):
            raise StateError(f"round {n} cannot start: round {n - 1} is not finished yet")
        missing = [p for p in PHASE_NAMES[: PHASE_NAMES.index(name)] if not state.is_done(n, p)]
        if missing:
            raise StateError(f"round {n}: run {', '.join(missing)} before {name}")
        want, keys = self.inputs_hash(n, phase, state)
        done = state.record(n, name)
        if done is not None:
            if done.keys is None:  # migrated from a version-1 state file: adopt today's hash
                done.inputs_hash, done.keys = want, keys
                state.save()
            elif done.inputs_hash != want:
                if self.changed_keys(done.keys, keys):
                    raise StateError(self._changed_message(n, name, done, keys))
                # Same settings (keys new to pickloop count at their default) and only the chain
                # moved: an earlier phase adopted a new hash after an upgrade. Adopt it here too.
                done.inputs_hash, done.keys = want, keys
                state.save()
            return PhaseOutcome(n, name, True, 0.0, phase.summary_from(done.summary))
        self.report(f"round {n}: {name}")
        ctx = self.context(n)
        started = time.monotonic()
        summary = phase.load().run(ctx)
        seconds = time.monotonic() - started
        if ctx._examples is not None:
            self._examples[n] = ctx._examples
        if is_main_process():  # under a distributed launch, one process records the phase
            self.state().mark_done(n, name, want, seconds, dataclasses.asdict(summary), keys=keys)
        outcome = PhaseOutcome(n, name, False, seconds, summary)
        if self.on_phase_done is not None:
            self.on_phase_done(outcome)
        return outcome

    def redo_plan(self, n: int, name: str) -> list[tuple[int, str]]:
        """What `redo(n, name)` would forget: that phase, every later phase of round n, later rounds."""
        self._phase(name)
        state = self.state()
        later = PHASE_NAMES[PHASE_NAMES.index(name) :]
        plan = [(n, p) for p in later if state.is_done(n, p)]
        plan += [(m, p) for m in sorted(state.rounds) if m > n for p in PHASE_NAMES if state.is_done(m, p)]
        return plan

    def redo(self, n: int, name: str) -> list[tuple[int, str]]:
        """Forget `name` and what follows it, so the next run redoes them with the current settings.

        Artifacts stay where they are until the phase overwrites them; Argilla records are upserted by
        the same ids and a published revision is never published twice."""
        self._phase(name)
        later = PHASE_NAMES[PHASE_NAMES.index(name) :]
        for m in [m for m in self._examples if m >= n]:  # a redone regenerate (or aggregate) changes them
            del self._examples[m]
        return self.state().invalidate(n, later)

    @staticmethod
    def _phase(name: str) -> Phase:
        if name not in PHASES:
            raise StateError(f"unknown phase {name!r}; phases are {', '.join(PHASE_NAMES)}")
        return PHASES[name]

    # -- hashes ----------------------------------------------------------------------------------

    def key_hashes(self, n: int, phase: Phase) -> dict[str, str]:
        """One short hash per leaf config key the phase depends on (plus run.seed)."""
        dumped = self.config.model_dump(mode="json")
        out: dict[str, str] = {}
        for dotted in ("run.seed", *phase.keys_for(n)):
            value: Any = dumped
            for part in dotted.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            for leaf, v in flatten_leaves(dotted, value):
                out[leaf] = _value_hash(v)
        return out

    def inputs_hash(self, n: int, phase: Phase, state: RunState) -> tuple[str, dict[str, str]]:
        """The phase's own keys chained to the hash of the phase before it (or the last round)."""
        keys = self.key_hashes(n, phase)
        idx = PHASE_NAMES.index(phase.name)
        before = state.record(n, PHASE_NAMES[idx - 1]) if idx else state.record(n - 1, PHASE_NAMES[-1])
        upstream = before.inputs_hash if before else ""
        body = json.dumps({"keys": keys, "round": n, "upstream": upstream}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16], keys

    @staticmethod
    def changed_keys(old: dict[str, str] | None, new: dict[str, str]) -> list[str]:
        """Dotted keys whose value differs between a finished phase's record and now. A key one side
        does not have counts as its default value (a setting added to pickloop since, or one left
        out), so upgrading pickloop does not make a finished phase look changed."""
        old = old or {}
        defaults = _default_hashes()
        return sorted(
            k for k in set(old) | set(new) if old.get(k, defaults.get(k)) != new.get(k, defaults.get(k))
        )

    def _changed_message(self, n: int, name: str, done: PhaseRecord, keys: dict[str, str]) -> str:
        changed = self.changed_keys(done.keys, keys)
        what = (
            f"config key{'s' if len(changed) > 1 else ''} {', '.join(changed)} changed since"
            if changed
            else "an earlier phase was redone since"
        )
        return (
            f"round {n} {name} already ran with other settings: {what}. Finished phases are never redone "
            f"behind your back: restore the setting, or redo it and every later phase with "
            f"`pickloop round redo {name} CONFIG --round {n}`"
        )


def _value_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


@functools.cache
def _default_hashes() -> dict[str, str]:
    from loop.config import default_leaves

    return {k: _value_hash(v) for k, v in default_leaves().items()}
