"""The phase registry: the round, in order. A new capability is a new module plus one line here.

Each phase module defines `run(ctx: RoundContext) -> Summary` and a `Summary` dataclass (stored in
`state.json`, read back as attributes by `status` and the report). Modules are imported only when a
phase runs or a summary is read, and import their heavy libraries inside `run`, so importing the
registry (and the driver) loads no ML library.

`keys` are the dotted config keys whose values decide the phase's result: a finished phase is skipped
while they (and everything upstream) are unchanged, and a change names the key. `first_round_keys`
only count in round 1 (later rounds read the previous round's output, not `data`).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Phase:
    name: str
    module: str
    keys: tuple[str, ...] = ()
    first_round_keys: tuple[str, ...] = ()
    doc: str = ""

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def keys_for(self, round_n: int) -> tuple[str, ...]:
        return (self.first_round_keys if round_n == 1 else ()) + self.keys

    def summary_from(self, data: dict[str, Any] | None) -> Any:
        """The stored summary as the phase's dataclass; keys unknown to this version are dropped."""
        if data is None:
            return None
        cls = self.load().Summary
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


REGISTRY: tuple[Phase, ...] = (
    Phase(
        "train",
        "loop.phases.train",
        ("model", "train"),
        ("data.path", "data.revision", "data.split"),
        "LoRA fine-tune (TRL SFT + PEFT)",
    ),
    Phase("regenerate", "loop.phases.regenerate", ("data.regenerate",), (), "new pairs from documents (data.regenerate)"),
    Phase("generate", "loop.phases.generate", ("generate",), (), "K candidate answers per assistant turn"),
    Phase(
        "score", "loop.phases.score", ("select.base_ifd",), (), "value scores per turn (IFD, disagreement)"
    ),
    Phase(
        "push",
        "loop.phases.push",
        (
            "argilla.workspace",
            "argilla.min_submitted",
            "argilla.edit_question",
            "argilla.none_acceptable",
            "argilla.suggest_model_choice",
            "select",
        ),
        (),
        "the selected turns into an Argilla ranking dataset",
    ),
    Phase("wait", "loop.phases.wait", (), (), "until labelers have ranked the records"),
    Phase("pull", "loop.phases.pull", (), (), "read the rankings back (with ranks) from Argilla"),
    Phase("aggregate", "loop.phases.aggregate", ("aggregate",), (), "one answer per turn from the rankings"),
    Phase(
        "review",
        "loop.phases.review",
        ("review",),
        (),
        "conflicted records to one more labeler or an owner (on_conflict: review)",
    ),
    Phase("publish", "loop.phases.publish", ("publish",), (), "the round's dataset as revision round-N"),
    Phase("eval", "loop.phases.evaluate", (), (), "blind human evaluation (eval.every_round / eval.after_rounds)"),
)

PHASES: dict[str, Phase] = {p.name: p for p in REGISTRY}
PHASE_NAMES: tuple[str, ...] = tuple(PHASES)
