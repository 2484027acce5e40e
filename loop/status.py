"""What `pickloop status` shows: per round, the next phase, what was asked, labeling progress and the revision."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from loop.phases import PHASES

log = logging.getLogger("pickloop.status")


@dataclass(frozen=True)
class RoundStatus:
    round: int
    phase: str  # the next phase to run, or "done"
    total: int | None
    completed: int | None
    pending: int | None
    labelers: tuple[tuple[str, int], ...]  # (username, submitted)
    revision: str | None
    selection: tuple[int, int, int] | None = None  # (asked, auto-kept not selected, auto-kept verified)

    def selection_text(self) -> str:
        if self.selection is None:
            return "-"
        asked, not_selected, verified = self.selection
        return f"{asked} asked, {not_selected + verified} auto-kept ({verified} verified)"


def run_status(driver, *, live: bool = True) -> list[RoundStatus]:
    """One row per round started so far (and the next one), live progress for rounds in labeling.

    An empty list means nothing has run yet. Finished rounds report what the pull read (nothing is
    pending in a round that is done); rounds in labeling ask Argilla, once, without retries.
    """
    state = driver.state()
    if not state.started():
        return []
    rounds = sorted(set(state.rounds) | {state.current_round()})
    out = []
    for n in rounds:
        nxt = state.next_phase(n) or "done"
        pushed = _summary(state, n, "push")
        pulled = _summary(state, n, "pull")
        waited = _summary(state, n, "wait")
        published = _summary(state, n, "publish")
        total = completed = pending = None
        labelers: tuple[tuple[str, int], ...] = ()
        if waited:
            total, completed = waited.total, waited.completed + waited.settled
            pending = max(total - completed, 0)
            labelers = tuple(sorted(waited.labelers.items()))
        elif pulled and pulled.records is not None:
            total = pulled.records
        elif pushed:
            total = pushed.records
            if live:
                try:
                    from argilla_setup.connection import Api
                    from loop.phases.wait import dataset_progress

                    with Api(driver.connection(), max_tries=1) as api:
                        p = dataset_progress(api, pushed.dataset_id)
                    total, completed, pending = p.total, p.completed, p.pending
                    labelers = tuple((u.username, u.submitted) for u in p.users)
                except Exception as exc:  # status must still print what the run dir knows
                    log.warning("no live progress from Argilla: %s", exc)
        selection = None
        if pushed and pushed.selected is not None:
            selection = (pushed.selected, pushed.not_selected, pushed.verified_unchanged)
        revision = published.revision if published else None
        out.append(RoundStatus(n, nxt, total, completed, pending, labelers, revision, selection))
    return out


def _summary(state, n: int, phase: str):
    rec = state.record(n, phase)
    return PHASES[phase].summary_from(rec.summary) if rec else None
