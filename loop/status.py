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
    labeling: str | None  # the wait phase's line (`loop.phases.wait.describe`), without the labelers
    labelers: tuple[tuple[str, int], ...]  # (username, submitted)
    revision: str | None
    selection: tuple[int, int, int] | None = None  # (asked, auto-kept not selected, auto-kept verified)
    conflicts: int = 0  # records whose labelers disagreed (aggregate summary); shown after the labeling
    preference_pairs: int | None = None  # rows of the revision's `preferences` config (publish summary)
    review: tuple[int, int, int] | None = None  # (sent to review, decided by review, changed by review)
    reviewing: bool = False  # the review dataset is in Argilla and the review phase is not done

    def revision_text(self) -> str:
        """The revision and its preference pairs ("round-2 · 7 pairs"); no count for older revisions."""
        if self.revision is None:
            return "-"
        if self.preference_pairs is None:
            return self.revision
        return f"{self.revision} · {self.preference_pairs} pair{'s' if self.preference_pairs != 1 else ''}"

    def labeling_text(self) -> str:
        text = self.labeling or "-"
        if self.conflicts:
            text += f" · {self.conflicts} conflict{'s' if self.conflicts != 1 else ''}"
        if self.review:
            queued, reviewed, changed = self.review
            text += f" · {reviewed}/{queued} decided by review ({changed} changed)"
        elif self.reviewing:
            text += " · in review"
        return text

    def selection_text(self) -> str:
        if self.selection is None:
            return "-"
        asked, not_selected, verified = self.selection
        return f"{asked} asked, {not_selected + verified} auto-kept ({verified} verified)"


def run_status(driver, *, live: bool = True) -> list[RoundStatus]:
    """One row per round started so far (and the next one), live progress for rounds in labeling.

    An empty list means nothing has run yet. A round whose wait is over reports its final counts
    (complete, discarded, left unlabeled: nothing is pending any more); a round in labeling asks
    Argilla once, without retries, and logs one warning when it cannot.
    """
    from loop.phases.wait import describe, summary_progress

    state = driver.state()
    if not state.started():
        return []
    rounds = sorted(set(state.rounds) | {state.current_round()})
    out = []
    for n in rounds:
        nxt = state.next_phase(n) or "done"
        pushed = _summary(state, n, "push")
        waited = _summary(state, n, "wait")
        published = _summary(state, n, "publish")
        labeling, progress = None, None
        if waited:
            progress = summary_progress(waited)
            labeling = describe(progress, users=False, final=True)
        elif pushed:
            labeling = f"{pushed.records} records pushed"
            progress = _live(driver, pushed.dataset_id) if live else None
            if progress is not None:
                labeling = describe(progress, users=False)
        labelers = tuple((u.username, u.submitted) for u in progress.users) if progress else ()
        selection = None
        if pushed and pushed.selected is not None:
            selection = (pushed.selected, pushed.not_selected, pushed.verified_unchanged)
        revision = published.revision if published else None
        aggregated = _summary(state, n, "aggregate")
        conflicts = getattr(aggregated, "conflicts", 0) if aggregated else 0
        prefs = getattr(published, "preferences", None) if published else None
        pairs = prefs.get("preferences") if prefs else None
        reviewed = _summary(state, n, "review")
        review = (
            (reviewed.queued, reviewed.reviewed, reviewed.changed) if reviewed and reviewed.queued else None
        )
        reviewing = nxt == "review" and driver.paths.round(n).review_push.exists()
        out.append(
            RoundStatus(
                n, nxt, labeling, labelers, revision, selection, conflicts, pairs, review=review, reviewing=reviewing
            )
        )
    return out


def _live(driver, dataset_id: str):
    """Labeling progress from Argilla now, or None (one warning, no retries) when it cannot answer.

    From the server's counts alone (two requests at any size): where they cannot tell how many
    pending records are settled, the lower bound shows."""
    from argilla_setup.connection import Api
    from loop.phases.wait import live_progress

    a = driver.config.argilla
    try:
        with Api(driver.connection(), max_tries=1) as api:
            return live_progress(api, dataset_id, a.labelers, a.min_submitted, exact=False)
    except Exception as exc:  # status must still print what the run dir knows
        log.warning("no live progress from Argilla: %s", exc)
        return None


def _summary(state, n: int, phase: str):
    rec = state.record(n, phase)
    return PHASES[phase].summary_from(rec.summary) if rec else None


def latest_evaluation(run_dir) -> list[str]:
    """The latest `pickloop eval` result: a headline, then one line per model (strength, win rate vs
    base); empty when the run has none."""
    from loop.evaluation.report import headline, latest_report

    report = latest_report(run_dir)
    if report is None:
        return []
    return [f"Latest {headline(report)}:"] + [f"  {line}" for line in report.status_lines()]
