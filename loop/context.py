"""What a phase gets: the config, its round's paths, earlier summaries, and where to report.

Phases never reach into the driver: everything they read comes through a `RoundContext`, and
everything they write goes to `ctx.paths` (atomically) or into the summary they return.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loop.paths import RoundPaths, RunPaths

if TYPE_CHECKING:
    from loop.config import RunConfig
    from loop.data import Example
    from loop.state import RunState

Reporter = Callable[[str], None]
log = logging.getLogger("pickloop")


@dataclass
class RoundContext:
    config: RunConfig
    round: int
    run: RunPaths
    report: Reporter = field(default=lambda msg: log.info(msg))
    progress: bool = True
    simulated_labelers: bool | None = None
    _examples: list | None = field(default=None, repr=False)

    @property
    def paths(self) -> RoundPaths:
        return self.run.round(self.round)

    @property
    def previous(self) -> RoundPaths | None:
        return self.run.round(self.round - 1) if self.round > 1 else None

    @property
    def seed(self) -> int:
        """The round's seed: run.seed + round (training, sampling, shuffling)."""
        return self.config.run.seed + self.round

    def state(self) -> RunState:
        from loop.state import RunState

        return RunState.load(self.run.dir)

    def summary(self, phase: str) -> Any:
        """An earlier phase's summary of this round, as its dataclass (None when it has not run)."""
        from loop.phases import PHASES

        rec = self.state().record(self.round, phase)
        return PHASES[phase].summary_from(rec.summary) if rec else None

    def examples(self) -> list[Example]:
        """The round's input: round 1 a snapshot of the configured data (taken once, so later edits to
        the source cannot change a round that already started) less `eval.holdout_fraction`'s held-out
        evaluation questions, round n round n-1's dataset (after its review, `RunState.round_output`);
        plus, once this round's `regenerate` phase is done, the new pairs it wrote."""
        from loop.data import load_examples, write_jsonl

        if self._examples is None:
            if self.previous is not None:
                source = self.state().round_output(self.round - 1)
            else:
                source = self.paths.input
                if not source.exists():
                    d = self.config.data
                    examples = load_examples(d.path, revision=d.revision, split=d.split)
                    holdout = self.config.eval.holdout_fraction
                    if holdout is not None:  # split off before the snapshot: no phase ever sees them
                        from loop.evaluation.questions import split_holdout

                        examples, held = split_holdout(examples, holdout, self.config.run.seed)
                        write_jsonl(held, self.run.holdout)
                    write_jsonl(examples, source)
            self._examples = load_examples(source)
            new = self.paths.regenerated
            if new.is_file() and new.stat().st_size and self.state().is_done(self.round, "regenerate"):
                self._examples = self._examples + load_examples(new)
        return self._examples

    def connection(self):
        """The Argilla connection: `argilla.api_url` + key (env or `api_key_file`), else the embedded server."""
        return argilla_connection(self.config)

    def limit_cpu_threads(self) -> None:
        threads = self.config.model.cpu_threads
        if threads:
            import torch

            if not torch.cuda.is_available():
                torch.set_num_threads(threads)


def argilla_connection(config: RunConfig):
    """`argilla.api_url` with its key from `ARGILLA_API_KEY` or `argilla.api_key_file` (0600), else the
    embedded server's owner credentials under `argilla.home`."""
    from argilla_setup.connection import resolve_connection
    from loop.config import read_secret

    a = config.argilla
    key = read_secret("ARGILLA_API_KEY", a.api_key_file, required=False) if a.api_url else None
    return resolve_connection(a.api_url, key, a.home)


def world_size() -> int:
    """Processes in a distributed launch (`accelerate launch`/`torchrun` set WORLD_SIZE)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


