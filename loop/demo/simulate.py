"""Simulated labelers for the unattended demo. Clearly a simulation, and announced as one.

Each simulated labeler is a real Argilla annotator account acting through the same `/api/v1/me/...`
endpoints the UI uses: it fetches its pending queue, ranks the candidates by similarity to the
reference answer (token F1 plus Gaussian noise, so labelers disagree a little), sometimes writes the
reference as a better answer when no candidate is close, and sometimes discards. It runs beside the
driver like real labelers would, knowing nothing of it: it watches the workspace for round datasets.
A simulated reviewer is one more such account: it sees only the review workspace, so it answers the
`<run>-round-N-review` datasets (`loop/phases/review.py`) and nothing else.
"""

from __future__ import annotations

import _thread
import json
import logging
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from argilla_setup import rankings, schema
from argilla_setup.connection import Api, Connection
from argilla_setup.users import credentials_file
from loop.demo.metrics import token_f1

log = logging.getLogger("pickloop.demo.simulate")


@dataclass(frozen=True)
class LabelerStyle:
    noise: float = 0.08  # std-dev of the noise added to each candidate's similarity
    edit_below: float = 0.6  # write the reference when the best candidate scores below this...
    edit_rate: float = 0.5  # ...this often
    discard_rate: float = 0.02


@dataclass
class LabelerStats:
    submitted: int = 0
    edited: int = 0
    discarded: int = 0
    ties: int = 0


def decide(
    candidates: Mapping[str, str], reference: str, rng: random.Random, style: LabelerStyle
) -> tuple[str, dict | None, bool, bool]:
    """One record: (status, response values, edited?, tie?). Scores are rounded so near-equal
    candidates tie, as people's rankings do."""
    if rng.random() < style.discard_rate:
        return "discarded", None, False, False
    scores = {
        slot: round(token_f1(text, reference) + rng.gauss(0, style.noise), 1)
        for slot, text in candidates.items()
    }
    groups: dict[float, list[str]] = {}
    for slot, score in scores.items():
        groups.setdefault(score, []).append(slot)
    order = [sorted(groups[s]) for s in sorted(groups, reverse=True)]
    tie = any(len(g) > 1 for g in order)
    best_true = max((token_f1(t, reference) for t in candidates.values() if t), default=0.0)
    edit = best_true < style.edit_below and rng.random() < style.edit_rate
    values = rankings.response_values(order, better_answer=reference if edit else None)
    return "submitted", values, edit, tie


class SimulatedLabelers(threading.Thread):
    """Label every pending record of every `<run>-round-N` dataset until stopped."""

    def __init__(
        self,
        api_url: str,
        home: Path,
        names: Sequence[str],
        references: Mapping[str, str],
        *,
        run: str,
        workspace: str,
        seed: int = 0,
        style: LabelerStyle = LabelerStyle(),
        interval: float = 0.5,
    ):
        super().__init__(name="pickloop-simulated-labelers", daemon=True)
        self.api_url, self.home, self.names = api_url, home, list(names)
        self.references, self.run_name, self.workspace = references, run, workspace
        self.seed, self.style, self.interval = seed, style, interval
        self.stats = {n: LabelerStats() for n in self.names}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.max_failures = 10

    def _api(self, name: str) -> Api | None:
        """The labeler's client, or None while the driver has not created the account yet."""
        try:
            creds = json.loads(credentials_file(name, self.home).read_text())
        except FileNotFoundError:
            return None
        return Api(Connection(self.api_url, creds["api_key"]))

    def label_once(self) -> int:
        """One pass over every labeler's queue; returns how many responses were sent."""
        sent = 0
        for name in self.names:
            api = self._api(name)
            if api is None:
                continue
            with api:
                for ds in self.round_datasets(api):
                    sent += self._label_dataset(api, name, ds["id"])
        return sent

    def round_datasets(self, api: Api) -> list[dict]:
        """The run's round datasets this labeler can label: published ones only, as in the UI.

        The driver creates a dataset as a draft, adds its fields and questions, then publishes it;
        the dataset's search index exists only from then on, so a draft has no questions yet and
        searching its records fails on the server (HTTP 500, `IndexNotFoundError`)."""
        prefix = f"{self.run_name}-round-"
        items = api.get("/api/v1/me/datasets")["items"]
        return [ds for ds in items if ds["name"].startswith(prefix) and ds.get("status") == "ready"]

    def _label_dataset(self, api: Api, name: str, dataset_id: str) -> int:
        sent = 0
        questions = api.get(f"/api/v1/datasets/{dataset_id}/questions")["items"]
        ranking = next(q for q in questions if q["name"] == schema.RANKING_QUESTION)
        slots = [opt["value"] for opt in ranking["settings"]["options"]]
        while not self.stop_event.is_set():
            records, _ = rankings.pending_records(api, dataset_id, limit=100)
            if not records:
                return sent
            items = []
            for rec in records:
                fields = rec["fields"]
                example = rec["metadata"].get(schema.META_EXAMPLE_ID, "")
                rng = random.Random(f"{self.seed}:{name}:{rec['id']}")
                cands = {slot: fields.get(slot) or "" for slot in slots}
                status, values, edited, tie = decide(cands, self.references.get(example, ""), rng, self.style)
                st = self.stats[name]
                st.submitted += status == "submitted"
                st.discarded += status == "discarded"
                st.edited += edited
                st.ties += tie
                items.append((rec["id"], values, status))
            sent += rankings.submit_responses(api, items)
        return sent

    def run(self) -> None:
        """Label until stopped. Passing failures (a busy server) are retried; after `max_failures`
        in a row the error is kept in `error` and the main thread is interrupted, so a demo never
        waits forever for labelers that are gone."""
        failures = 0
        while not self.stop_event.is_set():
            try:
                self.label_once()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning(
                    "simulated labelers: %s (failure %d of %d in a row)",
                    _reason(exc),
                    failures,
                    self.max_failures,
                )
                if failures >= self.max_failures:
                    self.error = exc
                    _thread.interrupt_main()
                    return
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def _reason(exc: BaseException) -> str:
    """The error's type and message (some, like `StopIteration`, have an empty message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def judge(answer_a: str, answer_b: str, reference: str) -> str:
    """A simulated judge's verdict: the answer with the higher token F1 against the reference; a tie
    when both score the same."""
    from argilla_setup.pairwise import PREFER_A, PREFER_B, PREFER_TIE

    fa, fb = token_f1(answer_a, reference), token_f1(answer_b, reference)
    if abs(fa - fb) < 1e-12:
        return PREFER_TIE
    return PREFER_A if fa > fb else PREFER_B


class SimulatedJudges(SimulatedLabelers):
    """Judge every pending record of every `<run>-eval-*` dataset until stopped: a SIMULATION for the demo
    and tests, through the same `/api/v1/me/...` endpoints as the UI. A judge sees what people see
    (the question, Answer A, Answer B, the question id) and the reference of that question id, which
    people would not have."""

    def round_datasets(self, api: Api) -> list[dict]:
        prefix = f"{self.run_name}-eval-"
        items = api.get("/api/v1/me/datasets")["items"]
        return [ds for ds in items if ds["name"].startswith(prefix) and ds.get("status") == "ready"]

    def _label_dataset(self, api: Api, name: str, dataset_id: str) -> int:
        from argilla_setup import pairwise

        sent = 0
        while not self.stop_event.is_set():
            records, _ = rankings.pending_records(api, dataset_id, limit=100)
            if not records:
                return sent
            items = []
            for rec in records:
                fields = rec["fields"]
                reference = self.references.get(rec["metadata"].get(pairwise.META_QUESTION_ID, ""), "")
                verdict = judge(
                    fields.get(pairwise.ANSWER_A) or "", fields.get(pairwise.ANSWER_B) or "", reference
                )
                self.stats[name].submitted += 1
                self.stats[name].ties += verdict == pairwise.PREFER_TIE
                items.append((rec["id"], {pairwise.PREFERENCE_QUESTION: {"value": verdict}}, "submitted"))
            sent += rankings.submit_responses(api, items)
        return sent
