"""Which models an evaluation compares: `base` (`model.name_or_path`) and `round-N` (that round's
trained model in the run directory). Every name is checked before anything is generated or pushed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loop.config import RunConfig
from loop.errors import ConfigError, NotFoundError, StateError
from loop.paths import RunPaths

BASE = "base"
_ROUND = re.compile(r"^round-([1-9][0-9]*)$")


@dataclass(frozen=True)
class EvalModel:
    name: str  # "base" | "round-N"
    source: str  # a round's model folder, or the base model's folder / Hub id


def parse_model_list(text: str) -> list[str]:
    """`base,round-1,round-3` as names, in order (blanks dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def resolve_models(config: RunConfig, run: RunPaths, names: Sequence[str]) -> list[EvalModel]:
    """The models to compare; refuses fewer than two, repeats, unknown names, rounds never trained and
    rounds whose model folder is gone, naming what exists."""
    from loop.models import TRAIN_CONFIG
    from loop.state import RunState

    if len(names) < 2:
        raise ConfigError(
            f"an evaluation compares two or more models, got {len(names)} ({', '.join(names) or 'none'}); "
            "e.g. --models base,round-1",
            key="--models",
        )
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"listed twice: {', '.join(repeated)}", key="--models")
    state = RunState.load(run.dir)
    trained = [n for n in sorted(state.rounds) if state.is_done(n, "train")]
    known = ", ".join([BASE, *(f"round-{n}" for n in trained)])
    out = []
    for name in names:
        if name == BASE:
            out.append(EvalModel(BASE, config.model.name_or_path))
            continue
        match = _ROUND.match(name)
        if match is None:
            raise NotFoundError(f"unknown model {name!r}; name base or round-N (this run has: {known})")
        n = int(match.group(1))
        folder = run.round(n).model
        if n not in trained:
            raise NotFoundError(f"{name} has no trained model (this run has: {known})")
        if not (Path(folder) / TRAIN_CONFIG).is_file() or not (Path(folder) / "adapter").is_dir():
            raise StateError(
                f"the model of {name} is gone ({folder} is missing or incomplete); retrain it with "
                f"`pickloop round redo train CONFIG --round {n}`, or leave {name} out"
            )
        out.append(EvalModel(name, str(folder)))
    return out
