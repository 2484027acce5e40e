"""Which answers are compared, and in which order annotators see them.

Schedule: every pair of models for up to four models; beyond that each model meets its neighbours one
and two steps away on a cycle, so every model is in the same number of pairs (four) and the comparison
graph stays connected for Bradley–Terry, with records growing linearly, not quadratically.

Each (question, pair) is one record. Which model is Answer A is drawn per record from the secret
`shuffle_key()` (as a round's candidate slots are), the run seed and the record id; the record id is a
keyed hash too, so nothing an annotator sees names a model. The records with their models are written
to `pairs.jsonl` before anything is pushed, and re-planning gives the same records (a re-push upserts).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from loop.evaluation.questions import EvalQuestion
from loop.fsutil import atomic_path

ALL_PAIRS_UP_TO = 4


def schedule(models: Sequence[str]) -> list[tuple[str, str]]:
    """The model pairs to compare, each once, earlier model first."""
    k = len(models)
    if k <= ALL_PAIRS_UP_TO:
        return [(models[i], models[j]) for i in range(k) for j in range(i + 1, k)]
    seen: set[frozenset[str]] = set()
    out = []
    for step in (1, 2):
        for i in range(k):
            a, b = models[i], models[(i + step) % k]
            if frozenset((a, b)) not in seen:
                seen.add(frozenset((a, b)))
                out.append((a, b) if models.index(a) < models.index(b) else (b, a))
    return out


@dataclass(frozen=True)
class PairRecord:
    """One record: a question and two models' answers, in the order annotators see them."""

    record_id: str
    question_id: str
    context: list[dict[str, str]]
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> PairRecord:
        return cls(**json.loads(line))


def record_id(key: str, run: str, name: str, question_id: str, pair: tuple[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([key, run, name, question_id, sorted(pair)]).encode()).hexdigest()
    return f"{run}/eval-{name}/{digest[:20]}"


def plan_pairs(
    questions: Sequence[EvalQuestion],
    answers: dict[str, dict[str, str]],
    models: Sequence[str],
    *,
    run: str,
    name: str,
    seed: int,
    key: str | None = None,
) -> list[PairRecord]:
    """Every (question, scheduled pair) as a record with positions drawn per record (seeded, keyed)."""
    from loop.annotate import shuffle_key

    key = shuffle_key() if key is None else key
    out = []
    for q in questions:
        for pair in schedule(models):
            rid = record_id(key, run, name, q.id, pair)
            a, b = pair if random.Random(f"{key}:{seed}:{rid}").random() < 0.5 else pair[::-1]
            out.append(PairRecord(rid, q.id, list(q.context), a, b, answers[a][q.id], answers[b][q.id]))
    return out


def write_pairs(path, records: Sequence[PairRecord]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(r.to_json() + "\n")


def read_pairs(path) -> list[PairRecord]:
    return [PairRecord.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
