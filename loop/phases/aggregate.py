"""Phase `aggregate`: labelers' rankings into one answer per assistant turn, with agreement and provenance.

The rules are pure functions over small dataclasses (no I/O), so every rule below is tested with
exact numbers; `run` at the bottom reads `pulled.json`, writes `decisions.jsonl` and the round's
dataset `output.parquet`. It never asks Argilla: re-aggregating does not re-pull.

Rules, per record (one (example, turn)), in order:

1. Fewer submitted responses than `min_submitted` (none at all, by default): keep the current answer
   (`choice="original"`); the record was not completed.
2. A written/edited answer wins over ranked candidates: labelers write one only when no candidate is
   right. With several, the editor whose ranking agrees most with the consensus wins (Kendall's
   tau-b against the Borda scores); further ties go to the alphabetically first username, so the
   result does not depend on response order. An "edit" equal to a candidate or to the current
   answer (whitespace aside) is not an edit: the UI pre-fills the text box, and a labeler who left it
   as it was chose by ranking.
3. "None acceptable" from a strict majority of the submitted responses keeps the current answer and
   flags the record (`flagged_none_acceptable`) for a human to look at; nothing better was offered.
4. Otherwise the Borda winner. An annotator ranking n candidates gives n-1 points to the first place
   down to 0 for the last; tied candidates share the average of the points of the places they occupy
   (so every ranking hands out the same total). Candidates an annotator left unranked tie for last.
   Equal Borda totals are broken by, in order: the current answer (a change must be earned, and
   keeping it avoids churn between rounds), the greedy candidate (the model's own best guess, the
   most reproducible and, as docs/design.md notes, the likeliest to be right), then slot order as given
   (the generation order). This is a fixed order over the inputs, so the decision is deterministic.
   Before that, a conflict (below) is settled by `aggregate.on_conflict`.

Conflict (`ConflictRule`, from `aggregate.conflict_below` / `conflict_top_choice`): a record with at
least two submitted rankings whose Kendall's W is below `conflict_below` (`low_agreement`), or whose
labelers' first places have no candidate in common, ties at first place counting as all first
(`top_choices_differ`). One ranking is never a conflict, and the rule only reaches records that get to
step 4: a written answer and a "none acceptable" majority are decided as before. Modes:
`keep_current` (default) keeps the current answer, `choice="conflict_kept"`; `review` keeps it too,
`choice="conflict_review"`, for the `review` phase to re-queue to one more labeler or an owner in the
same round (`loop/phases/review.py`); a turn the review leaves unanswered stays `conflict_review` and
the next round's selection asks about it again (`loop.selection`, `force`); `best` takes the Borda
winner as if there were no conflict. Every
conflicted decision has `conflict=True` and the reason (both joined by `+` when both hold) in `reason`,
which the round's dataset keeps per turn.

Turns `select` did not send to labelers (`selection.jsonl`) keep their current answer with
`choice="auto_kept"` and the reason (`not_selected`, `verified_unchanged`); they count as not
completed.

Agreement is Kendall's W with the tie correction, over the annotators who ranked the record:
W = 12 S / (m^2 (n^3 - n) - m sum_j T_j), where S is the sum of squared deviations of the candidates'
rank sums from their mean and T_j = sum (t^3 - t) over annotator j's tie groups of size t. With fewer
than two rankings (or nothing to order) agreement is undefined: None, not 1.0. A round's agreement is
the mean over the records where it is defined.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from loop.context import RoundContext
from loop.errors import StateError
from loop.fsutil import atomic_path, write_text

Choice = Literal["original", "model", "edited", "auto_kept", "conflict_kept", "conflict_review"]
CHOICES: tuple[Choice, ...] = ("original", "model", "edited", "auto_kept", "conflict_kept", "conflict_review")
CONFLICT_CHOICES = ("conflict_kept", "conflict_review")
LOW_AGREEMENT = "low_agreement"
TOP_CHOICES_DIFFER = "top_choices_differ"


@dataclass(frozen=True)
class RecordCandidates:
    """What labelers saw for one assistant turn."""

    record_id: str
    example_id: str
    turn: int
    """Index in the conversation's `messages` of the assistant turn being decided."""
    slots: dict[str, str]
    """Slot name -> candidate text, in generation order (that order is the last tie-break)."""
    current: str
    """The dataset's current answer for this turn (kept when nothing better is chosen)."""
    original_slot: str | None = None
    """The slot showing `current`; None when it was not offered."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Slot -> generation settings; the greedy candidate has `temperature: 0` (or `do_sample: false`)."""


@dataclass(frozen=True)
class Response:
    """One annotator's submitted response to one record."""

    annotator: str
    ranking: Sequence[tuple[str, int]] = ()
    """(slot, rank) pairs, rank 1 best; equal ranks are ties; only the order of ranks matters."""
    edited: str | None = None
    """A written or edited answer, if any."""
    none_acceptable: bool = False


@dataclass(frozen=True)
class Decision:
    """The answer one (example, turn) gets this round, and why."""

    record_id: str
    example_id: str
    turn: int
    answer: str
    choice: Choice
    winning_slot: str | None
    """Slot of the chosen answer; None for an edited answer."""
    settings: dict[str, Any] | None
    """Generation settings of the chosen model candidate; None for `original` and `edited`."""
    annotator_count: int
    """Submitted responses."""
    agreement: float | None
    """Kendall's W over the annotators' rankings; None with fewer than two rankings."""
    flagged_none_acceptable: bool
    """A strict majority said no candidate is acceptable."""
    borda: dict[str, float]
    """Slot -> Borda points summed over annotators."""
    completed: bool = True
    """At least `min_submitted` responses; otherwise the current answer is kept."""
    editor: str | None = None
    """Annotator whose edited answer won (kept out of published rows)."""
    changed: bool = False
    """The answer differs from the current one."""
    reason: str | None = None
    """Why an `auto_kept` turn was not asked (`not_selected`, `verified_unchanged`: `loop.selection`), or
    why a record is a conflict (`low_agreement`, `top_choices_differ`, or both joined by `+`)."""
    conflict: bool = False
    """The labelers disagreed (see the module docstring); `choice` says what `on_conflict` made of it."""
    reviewed_by: str | None = None
    """`owner` or `labeler` when the `review` phase decided this conflicted turn (`loop/phases/review.py`)."""


@dataclass(frozen=True)
class ConflictRule:
    """When labelers disagree (see the module docstring) and what the record gets then."""

    mode: Literal["keep_current", "best", "review"] = "keep_current"
    below: float | None = 0.5
    """Kendall's W under this is a conflict; None: agreement alone never is."""
    top_choice: bool = True
    """First places with no candidate in common are a conflict."""

    @classmethod
    def from_settings(cls, settings) -> ConflictRule:
        return cls(settings.on_conflict, settings.conflict_below, settings.conflict_top_choice)


@dataclass(frozen=True)
class RoundAggregate:
    """A round's decisions and the numbers the lineage table and the report show."""

    round: int
    decisions: tuple[Decision, ...]
    counts: dict[str, int]
    """Decisions by choice: original / model / edited."""
    changed: int
    completed: int
    flagged_none_acceptable: int
    discarded: int
    """Discarded responses (ignored), as counted by the pull step."""
    draft: int
    """Draft responses (ignored), as counted by the pull step."""
    mean_agreement: float | None
    conflicts: int = 0
    """Records whose labelers disagreed, whatever `on_conflict` made of them."""

    @property
    def records(self) -> int:
        return len(self.decisions)


# --------------------------------------------------------------------------- rank arithmetic


def tie_groups(ranking: Sequence[tuple[str, int]], slots: Sequence[str]) -> list[list[str]]:
    """Slots grouped by rank, best first; slots missing from the ranking form a last group."""
    by_rank: dict[int, list[str]] = {}
    for slot, rank in ranking:
        by_rank.setdefault(int(rank), []).append(slot)
    groups = [by_rank[r] for r in sorted(by_rank)]
    ranked = {s for s, _ in ranking}
    missing = [s for s in slots if s not in ranked]
    return groups + [missing] if missing else groups


def borda_points(ranking: Sequence[tuple[str, int]], slots: Sequence[str]) -> dict[str, Fraction]:
    """n-1 points for first place down to 0 for last; a tie group shares its places' average."""
    n = len(slots)
    points: dict[str, Fraction] = {}
    place = 0
    for group in tie_groups(ranking, slots):
        share = Fraction(sum(n - 1 - p for p in range(place, place + len(group))), len(group))
        for slot in group:
            points[slot] = share
        place += len(group)
    return points


def fractional_ranks(ranking: Sequence[tuple[str, int]], slots: Sequence[str]) -> dict[str, Fraction]:
    """Ranks 1..n, tied slots getting the mean of the places they occupy (as Kendall's W needs)."""
    ranks: dict[str, Fraction] = {}
    place = 1
    for group in tie_groups(ranking, slots):
        mean = Fraction(2 * place + len(group) - 1, 2)
        for slot in group:
            ranks[slot] = mean
        place += len(group)
    return ranks


def kendalls_w(rankings: Sequence[Sequence[tuple[str, int]]], slots: Sequence[str]) -> float | None:
    """Kendall's coefficient of concordance with the tie correction; None when undefined."""
    m, n = len(rankings), len(slots)
    if m < 2 or n < 2:
        return None
    per_rater = [fractional_ranks(r, slots) for r in rankings]
    sums = [sum((ranks[s] for ranks in per_rater), Fraction(0)) for s in slots]
    mean = sum(sums, Fraction(0)) / n
    s = sum(((x - mean) ** 2 for x in sums), Fraction(0))
    ties = sum(len(g) ** 3 - len(g) for r in rankings for g in tie_groups(r, slots))
    denominator = m * m * (n**3 - n) - m * ties
    if denominator == 0:  # every annotator tied every candidate: nothing to agree on
        return None
    return float(12 * s / denominator)


def kendall_tau_b(x: Mapping[str, Fraction | float], y: Mapping[str, Fraction | float]) -> float:
    """Kendall's tau-b between two scorings of the same slots (higher is better in both).

    0.0 when either side ties everything (no order to agree with).
    """
    keys = list(x)
    concordant = discordant = ties_x = ties_y = 0
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            dx = (x[a] > x[b]) - (x[a] < x[b])
            dy = (y[a] > y[b]) - (y[a] < y[b])
            if dx == 0:
                ties_x += 1
            if dy == 0:
                ties_y += 1
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    pairs = len(keys) * (len(keys) - 1) // 2
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return (concordant - discordant) / denominator if denominator else 0.0


# --------------------------------------------------------------------------- decisions


def _is_greedy(settings: Mapping[str, Any] | None) -> bool:
    if not settings:
        return False
    return bool(
        settings.get("greedy") is True
        or settings.get("do_sample") is False
        or settings.get("temperature") in (0, 0.0)
    )


def _norm(text: str) -> str:
    return " ".join(text.split())


def _check(record: RecordCandidates, responses: Sequence[Response]) -> None:
    """Responses that do not fit the record are a bug upstream: fail loudly, never guess."""
    if record.original_slot is not None and record.original_slot not in record.slots:
        raise ValueError(f"{record.record_id}: original slot {record.original_slot!r} is not a slot")
    seen: set[str] = set()
    for resp in responses:
        if resp.annotator in seen:
            raise ValueError(f"{record.record_id}: two responses from {resp.annotator!r}")
        seen.add(resp.annotator)
        ranked = [s for s, _ in resp.ranking]
        unknown = sorted(set(ranked) - set(record.slots))
        if unknown:
            raise ValueError(f"{record.record_id}: {resp.annotator!r} ranked unknown slots {unknown}")
        if len(ranked) != len(set(ranked)):
            raise ValueError(f"{record.record_id}: {resp.annotator!r} ranked a slot twice")


def conflict_reason(
    rankings: Sequence[Sequence[tuple[str, int]]], slots: Sequence[str], agreement: float | None, rule: ConflictRule
) -> str | None:
    """Why these rankings (one per labeler who ranked) are a conflict, or None when they are not."""
    if len(rankings) < 2:
        return None
    reasons = []
    if rule.below is not None and agreement is not None and agreement < rule.below:
        reasons.append(LOW_AGREEMENT)
    if rule.top_choice:
        firsts = [set(tie_groups(r, slots)[0]) for r in rankings]
        if not set.intersection(*firsts):
            reasons.append(TOP_CHOICES_DIFFER)
    return "+".join(reasons) or None


def decide(
    record: RecordCandidates,
    responses: Sequence[Response],
    *,
    min_submitted: int = 1,
    conflict: ConflictRule | None = None,
) -> Decision:
    """The answer for one (example, turn); see the module docstring for the rules.

    `conflict` None applies the plain rules (no conflict detection: `on_conflict: best` and no reason)."""
    _check(record, responses)
    slots = list(record.slots)
    ranked = [r for r in responses if r.ranking]
    borda: dict[str, Fraction] = {s: Fraction(0) for s in slots}
    for resp in ranked:
        for slot, pts in borda_points(resp.ranking, slots).items():
            borda[slot] += pts
    agreement = kendalls_w([r.ranking for r in ranked], slots)
    flagged = 2 * sum(r.none_acceptable for r in responses) > len(responses)
    base = {
        "record_id": record.record_id,
        "example_id": record.example_id,
        "turn": record.turn,
        "annotator_count": len(responses),
        "agreement": agreement,
        "flagged_none_acceptable": flagged,
        "borda": {s: float(v) for s, v in borda.items()},
    }
    keep = {"answer": record.current, "choice": "original", "winning_slot": record.original_slot}
    if len(responses) < max(1, min_submitted):
        return Decision(**base, **keep, settings=None, completed=False)

    offered = {_norm(t) for t in record.slots.values()} | {_norm(record.current)}
    edits = [r for r in responses if r.edited and _norm(r.edited) and _norm(r.edited) not in offered]
    if edits:
        winner = _consensus_editor(edits, borda, slots)
        answer = winner.edited.strip()  # type: ignore[union-attr]
        return Decision(
            **base,
            answer=answer,
            choice="edited",
            winning_slot=None,
            settings=None,
            editor=winner.annotator,
            changed=answer != record.current,
        )
    if flagged or not slots:
        return Decision(**base, **keep, settings=None)

    reason = conflict_reason([r.ranking for r in ranked], slots, agreement, conflict) if conflict else None
    if reason and conflict.mode != "best":  # type: ignore[union-attr]
        choice = "conflict_review" if conflict.mode == "review" else "conflict_kept"  # type: ignore[union-attr]
        return Decision(**{**base, **keep, "choice": choice}, settings=None, reason=reason, conflict=True)
    if reason:
        base = {**base, "reason": reason, "conflict": True}

    order = {s: i for i, s in enumerate(slots)}
    best = max(
        slots,
        key=lambda s: (
            borda[s],
            s == record.original_slot,
            _is_greedy(record.settings.get(s)),
            -order[s],
        ),
    )
    if best == record.original_slot:
        return Decision(**base, **keep, settings=None)
    answer = record.slots[best]
    return Decision(
        **base,
        answer=answer,
        choice="model",
        winning_slot=best,
        settings=dict(record.settings.get(best) or {}),
        changed=answer != record.current,
    )


def _consensus_editor(edits: Sequence[Response], borda: Mapping[str, Fraction], slots: list[str]) -> Response:
    """The editor whose ranking agrees most with the Borda consensus; then by username."""

    def agreement(resp: Response) -> float:
        if not resp.ranking:
            return -math.inf  # no ranking: no evidence the editor agrees with anyone
        mine = {s: -r for s, r in fractional_ranks(resp.ranking, slots).items()}
        return kendall_tau_b(mine, borda)

    return min(edits, key=lambda r: (-agreement(r), r.annotator))


def aggregate_round(
    round_n: int,
    records: Iterable[RecordCandidates],
    responses: Mapping[str, Sequence[Response]],
    *,
    discarded: int = 0,
    draft: int = 0,
    min_submitted: int = 1,
    conflict: ConflictRule | None = None,
) -> RoundAggregate:
    """Decide every record of a round; `responses` maps record id -> its submitted responses."""
    decisions = tuple(
        decide(rec, responses.get(rec.record_id, ()), min_submitted=min_submitted, conflict=conflict)
        for rec in records
    )
    counts = {c: 0 for c in ("original", "model", "edited")}  # run() adds auto_kept; conflicts when any
    for d in decisions:
        counts[d.choice] = counts.get(d.choice, 0) + 1
    defined = [d.agreement for d in decisions if d.agreement is not None]
    return RoundAggregate(
        round=round_n,
        decisions=decisions,
        counts=counts,
        changed=sum(d.changed for d in decisions),
        completed=sum(d.completed for d in decisions),
        flagged_none_acceptable=sum(d.flagged_none_acceptable for d in decisions),
        discarded=discarded,
        draft=draft,
        mean_agreement=sum(defined) / len(defined) if defined else None,
        conflicts=sum(d.conflict for d in decisions),
    )


# --------------------------------------------------------------------------- applying decisions

_STRENGTH = {"auto_kept": -1, "original": 0, "conflict_kept": 0.5, "conflict_review": 0.5, "model": 1, "edited": 2}


def _settings_json(settings: Mapping[str, Any] | None) -> str | None:
    return json.dumps(settings, sort_keys=True, default=str) if settings is not None else None


def apply_decisions(
    rows: Sequence[Mapping[str, Any]], decisions: Iterable[Decision], round_n: int
) -> list[dict[str, Any]]:
    """The next dataset: each decided assistant turn's content replaced, provenance columns added.

    Rows are `{"id", "messages", ...}`; inputs are not modified. Every row gets `round`, `choice`,
    `annotator_count`, `agreement`, `generation_settings` (JSON or None), `reviewed_by` (`owner`,
    `labeler` or None: who decided a conflicted turn in the `review` phase) and `turns` (one entry per
    assistant turn, same keys plus `turn` and `reason`: why an `auto_kept` turn was not asked). For a
    multi-turn conversation the row-level values summarise its turns: the strongest choice (edited >
    model > conflict_kept/conflict_review > original > auto_kept), the fewest annotators, the mean defined agreement, and the settings when exactly one turn took a model answer.
    Turns without a decision keep their content and count as `original` with 0 annotators; a turn
    decided `original` keeps the row's content as it is.
    """
    by_key: dict[tuple[str, int], Decision] = {}
    for d in decisions:
        key = (str(d.example_id), d.turn)
        if key in by_key:
            raise ValueError(f"two decisions for example {d.example_id!r} turn {d.turn}")
        by_key[key] = d
    used: set[tuple[str, int]] = set()
    out = []
    for row in rows:
        messages = [dict(m) for m in row["messages"]]
        turns = []
        for i, msg in enumerate(messages):
            if msg.get("role") != "assistant":
                continue
            d = by_key.get((str(row["id"]), i))
            if d is None:
                turns.append(_turn_info(i, "original", 0, None, None))
                continue
            used.add((str(row["id"]), i))
            if d.choice in ("model", "edited"):  # the row is the truth for a kept answer
                msg["content"] = d.answer
            turns.append(
                _turn_info(i, d.choice, d.annotator_count, d.agreement, d.settings, d.reason, d.reviewed_by)
            )
        out.append({**row, "messages": messages, "round": round_n, **_summary(turns), "turns": turns})
    stray = sorted(set(by_key) - used)
    if stray:
        ex, turn = stray[0]
        raise ValueError(
            f"{len(stray)} decisions match no assistant turn, e.g. example {ex!r} turn {turn} "
            "(turn is the index of the assistant message in `messages`)"
        )
    return out


def _turn_info(
    turn: int,
    choice: str,
    count: int,
    agreement: float | None,
    settings: Mapping[str, Any] | None,
    reason: str | None = None,
    reviewed_by: str | None = None,
) -> dict[str, Any]:
    return {
        "turn": turn,
        "choice": choice,
        "annotator_count": count,
        "agreement": agreement,
        "generation_settings": _settings_json(settings),
        "reason": reason,
        "reviewed_by": reviewed_by,
    }


def _summary(turns: list[dict[str, Any]]) -> dict[str, Any]:
    if not turns:
        return {
            "choice": "original",
            "annotator_count": 0,
            "agreement": None,
            "generation_settings": None,
            "reviewed_by": None,
        }
    defined = [t["agreement"] for t in turns if t["agreement"] is not None]
    models = [t["generation_settings"] for t in turns if t["choice"] == "model"]
    return {
        "choice": max((t["choice"] for t in turns), key=_STRENGTH.__getitem__),
        "annotator_count": min(t["annotator_count"] for t in turns),
        "agreement": sum(defined) / len(defined) if defined else None,
        "generation_settings": models[0] if len(models) == 1 else None,
        "reviewed_by": next((t["reviewed_by"] for t in turns if t["reviewed_by"]), None),
    }


# --------------------------------------------------------------------------- the phase


@dataclass(frozen=True)
class Summary:
    records: int
    completed: int
    changed: int
    choices: dict[str, int]
    discarded: int = 0
    draft: int = 0
    none_acceptable: int = 0
    agreement: float | None = None
    auto_kept: dict[str, int] = field(default_factory=dict)  # reason -> turns not asked
    conflicts: int = 0  # records whose labelers disagreed (`on_conflict` decided what they got)


def auto_kept_decisions(selection, examples, round_n: int, run: str) -> list[Decision]:
    """Current answers for the turns `select` did not ask about (`loop.selection.Selected`, not selected)."""
    from argilla_setup.schema import record_external_id

    by_id = {ex.id: ex for ex in examples}
    out = []
    for t in selection:
        if t.selected:
            continue
        out.append(
            Decision(
                record_id=record_external_id(run, round_n, t.example_id, t.turn),
                example_id=t.example_id,
                turn=t.message_index,
                answer=by_id[t.example_id].messages[t.message_index]["content"],
                choice="auto_kept",
                winning_slot=None,
                settings=None,
                annotator_count=0,
                agreement=None,
                flagged_none_acceptable=False,
                borda={},
                completed=False,
                reason=t.reason,
            )
        )
    return out


def read_decisions(path: Path) -> list[Decision]:
    """`decisions.jsonl` (or the review's `reviewed.jsonl`) back as decisions; unknown keys dropped."""
    known = {f.name for f in fields(Decision)}
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            raw = json.loads(line)
            out.append(Decision(**{k: v for k, v in raw.items() if k in known}))
    return out


def read_pulled(path: Path) -> tuple[list[RecordCandidates], dict[str, list[Response]], int, int]:
    """`pulled.json` back as aggregation inputs."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(
            f"{path} is missing (the round was pulled by an older pickloop); redo the pull: "
            "`pickloop round redo pull CONFIG`"
        ) from None
    records = [RecordCandidates(**r) for r in raw["records"]]
    responses = {
        k: [
            Response(r["annotator"], tuple(tuple(x) for x in r["ranking"]), r["edited"], r["none_acceptable"])
            for r in v
        ]
        for k, v in raw["responses"].items()
    }
    return records, responses, int(raw["discarded"]), int(raw["draft"])


def run(ctx: RoundContext) -> Summary:
    import datasets

    from loop.data import to_rows
    from loop.selection import read_selection

    records, responses, discarded, draft = read_pulled(ctx.paths.pulled)
    agg = aggregate_round(
        ctx.round,
        records,
        responses,
        discarded=discarded,
        draft=draft,
        min_submitted=ctx.config.argilla.min_submitted,
        conflict=ConflictRule.from_settings(ctx.config.aggregate),
    )
    selection = read_selection(ctx.paths.selection)
    if selection is not None:
        kept = auto_kept_decisions(selection, ctx.examples(), ctx.round, ctx.config.run.name)
        order = {(t.example_id, t.message_index): i for i, t in enumerate(selection)}
        decisions = sorted([*agg.decisions, *kept], key=lambda d: order.get((d.example_id, d.turn), -1))
        counts = {**agg.counts, "auto_kept": len(kept)} if kept else agg.counts
        agg = replace(agg, decisions=tuple(decisions), counts=counts)
    write_text(
        ctx.paths.decisions,
        "".join(json.dumps(asdict(d), ensure_ascii=False, default=str) + "\n" for d in agg.decisions),
    )
    rows = apply_decisions(to_rows(ctx.examples()), agg.decisions, ctx.round)
    with atomic_path(ctx.paths.output) as tmp:
        datasets.Dataset.from_list(rows).to_parquet(str(tmp))
    return Summary(
        records=len(agg.decisions),
        completed=agg.completed,
        changed=agg.changed,
        choices=dict(agg.counts),
        discarded=agg.discarded,
        draft=agg.draft,
        none_acceptable=agg.flagged_none_acceptable,
        agreement=agg.mean_agreement,
        conflicts=agg.conflicts,
        auto_kept={
            r: sum(d.reason == r for d in agg.decisions) for r in ("not_selected", "verified_unchanged")
        },
    )
