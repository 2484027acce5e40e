"""The round driver: train → generate → push → wait → pull → publish, then the next round.

The driver only orchestrates. Each phase reads the previous phase's artifact from the round
directory and writes its own atomically; `RunState` records a phase as done (with a hash of its
inputs) only after that. Killing the process at any moment and re-running resumes at the first
phase not done: training restarts from scratch (its partial output is never taken as finished), the
push re-upserts the same deterministic records, the wait re-reads progress, the pull only reads,
and the publish step is idempotent per round.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from loop.config import RunConfig, config_hash
from loop.errors import StateError
from loop.state import PHASES, RunState

log = logging.getLogger("pickloop.driver")

INPUT_FILE = "input.jsonl"
OUTPUT_FILE = "output.parquet"
MODEL_DIR = "model"
CANDIDATES_FILE = "candidates.parquet"


@dataclass(frozen=True)
class PhaseOutcome:
    round: int
    phase: str
    skipped: bool
    seconds: float
    summary: dict


Reporter = Callable[[str], None]


class Driver:
    """Runs the phases of a config's rounds against its run directory."""

    def __init__(
        self,
        config: RunConfig,
        *,
        report: Reporter | None = None,
        progress: bool = True,
        simulated_labelers: bool | None = None,
    ):
        self.config = config
        self.simulated_labelers = simulated_labelers
        self._inputs: dict[int, list] = {}  # round -> its input examples (immutable once written)
        self.run_dir = config.run_dir()
        self.report = report or (lambda msg: log.info(msg))
        self.progress = progress

    # -- paths -----------------------------------------------------------------------------------

    def round_dir(self, n: int) -> Path:
        return self.run_dir / f"round-{n}"

    def state(self) -> RunState:
        return RunState.load(self.run_dir)

    # -- orchestration ---------------------------------------------------------------------------

    def run(self, max_rounds: int | None = None) -> list[PhaseOutcome]:
        """Run rounds until `max_rounds` (default: the config's), resuming where the last run stopped."""
        last = max_rounds or self.config.run.max_rounds
        outcomes = []
        state = self.state()
        n = state.current_round()
        while n <= last:
            for phase in PHASES:
                outcomes.append(self.run_phase(n, phase))
            n += 1
        return outcomes

    def run_phase(self, n: int, phase: str) -> PhaseOutcome:
        if phase not in PHASES:
            raise StateError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")
        state = self.state()
        if n > 1 and not state.is_done(n - 1, "publish"):
            raise StateError(f"round {n} cannot start: round {n - 1} is not published yet")
        missing = [p for p in PHASES[: PHASES.index(phase)] if not state.is_done(n, p)]
        if missing:
            raise StateError(f"round {n}: run {', '.join(missing)} before {phase}")
        want = self.inputs_hash(n, phase, state)
        done = state.record(n, phase)
        if done is not None:
            if done.inputs_hash != want:
                raise StateError(
                    f"round {n} {phase} already ran with other inputs or settings "
                    f"({self._changed_sections(phase)} changed since). Finished phases are never redone "
                    "behind your back: restore the settings, or start a new run (another run.name) "
                    "from this run's last published revision"
                )
            return PhaseOutcome(n, phase, True, 0.0, done.summary)
        self.report(f"round {n}: {phase}")
        started = time.monotonic()
        summary = getattr(self, f"_phase_{phase}")(n)
        seconds = time.monotonic() - started
        state = self.state()
        state.mark_done(n, phase, want, seconds, summary)
        return PhaseOutcome(n, phase, False, seconds, summary)

    # -- hashes ----------------------------------------------------------------------------------

    _SECTIONS = {
        "train": ("data", "model", "train"),
        "generate": ("generate",),
        "push": ("argilla",),
        "wait": (),
        "pull": ("aggregate",),
        "publish": ("publish",),
    }

    def _changed_sections(self, phase: str) -> str:
        return ", ".join(self._SECTIONS[phase]) or "an earlier phase"

    def inputs_hash(self, n: int, phase: str, state: RunState) -> str:
        """The phase's own settings chained to the hash of the phase before it (or the last round)."""
        cfg = self.config
        names = self._SECTIONS[phase]
        if phase == "train" and n > 1:
            names = ("model", "train")  # later rounds read the previous round's output, not `data`
        sections: list = [getattr(cfg, s) for s in names]
        if phase == "push":  # labelers may change mid-round; what shapes the records may not
            sections = [cfg.argilla.model_dump(include=self._PUSH_KEYS)]
        idx = PHASES.index(phase)
        if idx > 0:
            before = state.record(n, PHASES[idx - 1])
            upstream = before.inputs_hash if before else ""
        else:
            prev = state.record(n - 1, "publish")
            upstream = prev.inputs_hash if prev else ""
        return config_hash(sections, {"round": n, "seed": cfg.run.seed, "upstream": upstream})[:16]

    _PUSH_KEYS = {"workspace", "min_submitted", "edit_question", "none_acceptable", "suggest_model_choice"}

    # -- phases ----------------------------------------------------------------------------------

    def _limit_cpu_threads(self) -> None:
        threads = self.config.model.cpu_threads
        if threads:
            import torch

            if not torch.cuda.is_available():
                torch.set_num_threads(threads)

    def input_examples(self, n: int):
        """Round 1 reads a snapshot of the configured data (taken once, so later edits to the source
        cannot change a round that already started); round n reads round n-1's output."""
        from loop.data import load_examples, write_jsonl

        if n not in self._inputs:
            if n > 1:
                source = self.round_dir(n - 1) / OUTPUT_FILE
            else:
                source = self.round_dir(1) / INPUT_FILE
                if not source.exists():
                    d = self.config.data
                    write_jsonl(load_examples(d.path, revision=d.revision, split=d.split), source)
            self._inputs[n] = load_examples(source)
        return self._inputs[n]

    def _phase_train(self, n: int) -> dict:
        from loop.train import load_round_model, train_round

        examples = self.input_examples(n)
        previous = load_round_model(self.round_dir(n - 1) / MODEL_DIR) if n > 1 else None
        self._limit_cpu_threads()
        started = time.monotonic()
        result = train_round(
            examples,
            self.config.model,
            self.config.train,
            self.round_dir(n) / MODEL_DIR,
            previous=previous,
            seed=self.config.run.seed + n,
        )
        return {
            "examples": len(examples),
            "first_loss": result.first_loss,
            "final_loss": result.final_loss,
            "train_runtime_s": result.runtime_s,  # inside trainer.train()
            "train_call_s": time.monotonic() - started,  # the whole TRL/PEFT step: load, train, save
        }

    def _phase_generate(self, n: int) -> dict:
        from loop.generate import generate_candidates

        examples = self.input_examples(n)
        self._limit_cpu_threads()
        started = time.monotonic()
        turns = generate_candidates(
            examples,
            self.round_dir(n) / MODEL_DIR,
            self.config.generate,
            self.round_dir(n) / CANDIDATES_FILE,
            seed=self.config.run.seed + n,
            model_settings=self.config.model,
            progress=self.progress,
        )
        return {
            "turns": len(turns),
            "candidates": sum(len(t.candidates) for t in turns),
            "same_as_current": sum(any(c.is_current for c in t.candidates) for t in turns),
            "generate_runtime_s": time.monotonic() - started,
        }

    def slots(self) -> int:
        """Ranking options per record: the current answer plus K generated candidates."""
        return self.config.generate.k + 1

    def schema_options(self, n: int):
        from argilla_setup.schema import SchemaOptions

        a = self.config.argilla
        turns = self.input_examples(n)
        multi = any(len(ex.assistant_turns()) > 1 or ex.messages[0]["role"] == "system" for ex in turns)
        return SchemaOptions(
            multi_turn=multi,
            edit_question=a.edit_question,
            none_acceptable=a.none_acceptable,
            min_submitted=a.min_submitted,
        )

    def connection(self):
        from argilla_setup.connection import resolve_connection

        a = self.config.argilla
        return resolve_connection(a.api_url, None, a.home)

    def _phase_push(self, n: int) -> dict:
        from loop import annotate
        from loop.generate import load_candidates

        turns = load_candidates(self.round_dir(n) / CANDIDATES_FILE)
        model_name = f"{Path(self.config.model.name_or_path).name}@round-{n}"
        items = [annotate.item_from_turn(t, model_name) for t in turns]
        plan = annotate.plan_records(
            items, run=self.config.run.name, round_n=n, slots=self.slots(), seed=self.config.run.seed
        )
        annotate.write_plan(self.round_dir(n), plan)
        conn = self.connection()
        self._ensure_labelers(conn)
        result = annotate.push(
            conn,
            plan,
            round_dir=self.round_dir(n),
            run=self.config.run.name,
            round_n=n,
            workspace=self.config.argilla.workspace,
            slots=self.slots(),
            options=self.schema_options(n),
            suggest=self.config.argilla.suggest_model_choice,
            progress=self.progress,
        )
        self.report(
            f"round {n}: {result.records} records in Argilla dataset {result.dataset_name}: {result.url}"
        )
        return {"dataset": result.dataset_name, "dataset_id": result.dataset_id, "records": result.records}

    def _ensure_labelers(self, conn) -> None:
        """Create the configured labelers that do not exist yet (credentials written 0600, shown once)."""
        from argilla_setup import users
        from argilla_setup.connection import Api

        a = self.config.argilla
        if not a.labelers:
            return
        with Api(conn) as api:
            ws = api.workspace_by_name(a.workspace) or api.post(
                "/api/v1/workspaces", json={"name": a.workspace}
            )
            existing = {u.name: u for u in users.list_users(api)}
            new = [name for name in a.labelers if name not in existing]
            if new:
                for user in users.add_users(api, new, workspace=a.workspace, home=a.home):
                    self.report(
                        f"labeler {user.name} created, password {user.password} (shown once; kept in "
                        f"{user.credentials_file}, mode 0600)"
                    )
            for name in a.labelers:
                if name in existing and a.workspace not in existing[name].workspaces:
                    user_id = next(
                        u["id"] for u in api.get("/api/v1/users")["items"] if u["username"] == name
                    )
                    api.post(f"/api/v1/workspaces/{ws['id']}/users", json={"user_id": user_id})

    def _phase_wait(self, n: int) -> dict:
        from argilla_setup.connection import Api
        from loop import annotate
        from loop.phases.wait import wait_for_completion

        pushed = annotate.read_push(self.round_dir(n))
        with Api(self.connection()) as api:
            result = wait_for_completion(
                api,
                pushed.dataset_id,
                self.config.wait,
                tag=f"pickloop:{self.config.run.name}:round-{n}",
                labelers=self.config.argilla.labelers,
                on_progress=lambda p: self.report(
                    f"round {n}: {p.completed}/{p.total} records completed"
                    + (f" ({p.settled} more answered by every labeler)" if p.settled else "")
                    + "".join(f", {u.username} {u.submitted} submitted" for u in p.users)
                ),
            )
        return {
            "reason": result.reason,
            "completed": result.progress.completed,
            "settled": result.progress.settled,
            "total": result.progress.total,
            "wait_s": result.seconds,
            "polls": result.polls,
            "webhook_events": result.webhook_events,
            "detect_latency_s": result.detect_latency_s,
        }

    def _phase_pull(self, n: int) -> dict:
        import datasets

        from loop import annotate
        from loop.phases.aggregate import aggregate_round, apply_decisions
        from loop.data import to_rows
        from loop.fsutil import atomic_path, write_text

        rd = self.round_dir(n)
        plan = annotate.read_plan(rd)
        pushed = annotate.read_push(rd)
        pulled = annotate.pull(self.connection(), pushed.dataset_id, plan)
        if pulled.missing:
            raise StateError(
                f"{pulled.missing} of {len(plan)} planned records are missing from Argilla dataset "
                f"{pushed.dataset_name}; re-run the push phase (`pickloop round push`) to restore them"
            )
        agg = aggregate_round(
            n,
            pulled.records,
            pulled.responses,
            discarded=pulled.discarded,
            draft=pulled.draft,
            min_submitted=self.config.argilla.min_submitted,
        )
        write_text(
            rd / "responses.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pulled.raw)
        )
        write_text(
            rd / "decisions.jsonl",
            "".join(json.dumps(asdict(d), ensure_ascii=False, default=str) + "\n" for d in agg.decisions),
        )
        rows = apply_decisions(to_rows(self.input_examples(n)), agg.decisions, n)
        with atomic_path(rd / OUTPUT_FILE) as tmp:
            datasets.Dataset.from_list(rows).to_parquet(str(tmp))
        return {
            "records": agg.records,
            "completed": agg.completed,
            "changed": agg.changed,
            "choices": agg.counts,
            "discarded": agg.discarded,
            "draft": agg.draft,
            "none_acceptable": agg.flagged_none_acceptable,
            "agreement": agg.mean_agreement,
        }

    def _phase_publish(self, n: int) -> dict:
        import datasets

        from loop.revisions import RoundStats, publish_round
        from loop.train import load_round_model

        rd = self.round_dir(n)
        ds = datasets.Dataset.from_parquet(str(rd / OUTPUT_FILE))
        pulled = self.state().record(n, "pull")
        model = load_round_model(rd / MODEL_DIR)
        stats = RoundStats.from_dataset(
            ds,
            n,
            changed=pulled.summary.get("changed") if pulled else None,
            base_model=model.original_base,
            adapter=str(model.adapter_dir),
            simulated_labelers=self.simulated_labelers,
        )
        rev = publish_round(
            ds, stats, self.config.publish, run_name=self.config.run.name, run_dir=self.run_dir
        )
        self.report(
            f"round {n}: {'published' if rev.created else 'already published'} {rev.revision} at {rev.url}"
        )
        return {"revision": rev.revision, "commit": rev.commit_sha, "url": rev.url, "backend": rev.backend}
