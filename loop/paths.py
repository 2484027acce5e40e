"""The one resolver for pickloop's directories.

Everything pickloop writes lives under `PICKLOOP_HOME` (default `./.pickloop`):
`runs/<run>/round-<n>/<artifact>` for rounds, `argilla/` for the embedded server's home.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "PICKLOOP_HOME"


def home() -> Path:
    """pickloop's state directory, honouring `PICKLOOP_HOME`."""
    return Path(os.environ.get(ENV_HOME) or Path.cwd() / ".pickloop").expanduser().resolve()


def argilla_home() -> Path:
    """Default home of the embedded Argilla server (database, search index, logs, credentials)."""
    return Path(os.environ.get("PICKLOOP_ARGILLA_HOME") or home() / "argilla").expanduser().resolve()


def run_dir(run_name: str, base: Path | None = None) -> Path:
    return (base or home() / "runs") / run_name


def round_dir(run_name: str, round_n: int, base: Path | None = None) -> Path:
    return run_dir(run_name, base) / f"round-{round_n}"


class RoundPaths:
    """Every artifact of one round, named in one place. Phases read and write only through these."""

    def __init__(self, run_dir: Path, round_n: int):
        self.run_dir = Path(run_dir)
        self.round = round_n
        self.dir = self.run_dir / f"round-{round_n}"

    def __repr__(self) -> str:
        return f"RoundPaths({self.dir})"

    # train
    @property
    def input(self) -> Path:
        """Round 1 only: the snapshot of the configured step-1 data, taken once."""
        return self.dir / "input.jsonl"

    @property
    def model(self) -> Path:
        """The round's trained model folder (adapter, merged weights, train_config.json)."""
        return self.dir / "model"

    @property
    def replay(self) -> Path:
        """The earlier versions replayed in this round's training (`train.replay`), one JSON line each."""
        return self.dir / "replay.jsonl"

    # regenerate
    @property
    def regenerated(self) -> Path:
        """New pairs the round's model wrote from the documents (`data.regenerate`); they join the
        round's dataset once the regenerate phase is done."""
        return self.dir / "regenerated.jsonl"

    # generate
    @property
    def candidates(self) -> Path:
        return self.dir / "candidates.parquet"

    @property
    def candidate_chunks(self) -> Path:
        """Numbered chunks written while generating, so a crash loses at most one chunk."""
        return self.dir / "candidates.chunks"

    # score
    @property
    def scores(self) -> Path:
        """Per assistant turn: the value scores selection ranks by (`loop/phases/score.py`)."""
        return self.dir / "scores.parquet"

    # push / wait / pull
    @property
    def selection(self) -> Path:
        """Per assistant turn: asked or auto-kept (and why), in the order labelers get them."""
        return self.dir / "selection.jsonl"

    @property
    def push_plan(self) -> Path:
        return self.dir / "push_plan.jsonl"

    @property
    def push(self) -> Path:
        return self.dir / "push.json"

    @property
    def pulled(self) -> Path:
        """Everything the pull read from Argilla, kept so re-aggregating never re-pulls."""
        return self.dir / "pulled.json"

    @property
    def responses(self) -> Path:
        return self.dir / "responses.jsonl"

    # aggregate
    @property
    def decisions(self) -> Path:
        return self.dir / "decisions.jsonl"

    @property
    def output(self) -> Path:
        """Aggregate's dataset: the next round's input and what publish uploads, unless the `review`
        phase decided conflicted turns (then `reviewed`; `RunState.round_output` says which)."""
        return self.dir / "output.parquet"

    # review (aggregate.on_conflict: review)
    @property
    def review_push(self) -> Path:
        """The review dataset (id, name, workspace, records), written once its records are in Argilla."""
        return self.dir / "review.json"

    @property
    def review_responses(self) -> Path:
        """Every response to the review dataset as pulled, one JSON line each (the audit trail)."""
        return self.dir / "review_responses.jsonl"

    @property
    def reviewed_decisions(self) -> Path:
        """Every turn's decision after the review: aggregate's, with the reviewed ones replaced."""
        return self.dir / "reviewed.jsonl"

    @property
    def reviewed(self) -> Path:
        """The round's dataset after the review."""
        return self.dir / "reviewed.parquet"


class RunPaths:
    """The run directory's own files (state, revisions), and each round's `RoundPaths`."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    def round(self, n: int) -> RoundPaths:
        return RoundPaths(self.dir, n)

    @property
    def holdout(self) -> Path:
        """`eval.holdout_fraction`'s held-out step-1 examples, split off before round 1, never trained on."""
        return self.dir / "eval" / "holdout.jsonl"

    def evaluation(self, name: str) -> EvalPaths:
        return EvalPaths(self.dir / "eval" / name)


class EvalPaths:
    """Every artifact of one evaluation (`pickloop eval`), under `<run dir>/eval/<name>/`."""

    def __init__(self, eval_dir: Path):
        self.dir = Path(eval_dir)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def questions(self) -> Path:
        """The evaluation questions as answered, with their reference answers when given."""
        return self.dir / "questions.jsonl"

    def answers(self, model: str) -> Path:
        """One model's greedy answers, one JSON line per question."""
        return self.dir / "answers" / f"{model}.jsonl"

    @property
    def pairs(self) -> Path:
        """The pushed records: which model is Answer A / Answer B (never sent to Argilla)."""
        return self.dir / "pairs.jsonl"

    @property
    def push(self) -> Path:
        return self.dir / "push.json"

    @property
    def responses(self) -> Path:
        """Every judgement pulled from Argilla."""
        return self.dir / "responses.jsonl"

    @property
    def report_json(self) -> Path:
        return self.dir / "report.json"

    @property
    def report_md(self) -> Path:
        return self.dir / "report.md"

    @property
    def plot(self) -> Path:
        return self.dir / "report.png"
