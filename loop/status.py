"""What `pickloop status` shows: per round, the next phase, labeling progress and the revision."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


def run_status(driver, *, live: bool = True) -> list[RoundStatus]:
    """One row per round started so far (and the next one), live progress for rounds in labeling."""
    state = driver.state()
    rounds = sorted(set(state.rounds) | {state.current_round()})
    out = []
    for n in rounds:
        nxt = state.next_phase(n) or "done"
        pushed, pulled = state.record(n, "push"), state.record(n, "pull")
        published = state.record(n, "publish")
        total = completed = pending = None
        labelers: tuple[tuple[str, int], ...] = ()
        if pulled:
            total, completed = pulled.summary.get("records"), pulled.summary.get("completed")
            pending = total - completed if total is not None and completed is not None else None
        elif pushed:
            total = pushed.summary.get("records")
            if live:
                try:
                    from argilla_setup.connection import Api
                    from loop.phases.wait import dataset_progress

                    with Api(driver.connection()) as api:
                        p = dataset_progress(api, pushed.summary["dataset_id"])
                    total, completed, pending = p.total, p.completed, p.pending
                    labelers = tuple((u.username, u.submitted) for u in p.users)
                except Exception as exc:  # status must still print what the run dir knows
                    log.warning("no live progress from Argilla: %s", exc)
        out.append(
            RoundStatus(
                n,
                nxt,
                total,
                completed,
                pending,
                labelers,
                published.summary.get("revision") if published else None,
            )
        )
    return out
