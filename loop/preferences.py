"""The labelers' rankings as preference data: pairs for DPO/reward models and unpaired rows for KTO.

Aggregation keeps one answer per turn; the rankings behind it are preference data that TRL's
`DPOTrainer`, `RewardTrainer` and `KTOTrainer` take as they are. Publish stores them next to the
round's data, in the same tagged revision, as two extra configs of the dataset:

    pairs = load_dataset(repo, "preferences", split="train", revision="round-2")    # DPO, reward
    kto = load_dataset(repo, "preferences_kto", split="train", revision="round-2")  # KTO

Pure functions from `pulled.json` (`loop.phases.aggregate.read_pulled`) and the round's input to rows;
`read_round` at the bottom is the only I/O. The same inputs always give the same rows in the same
order, so a re-run publish writes identical data.

Which turns: every record `aggregate` counts as completed (at least `argilla.min_submitted`
submitted responses), including "none acceptable" majorities and conflicts (their `agreement` is in
every row, to filter on), and every record the `review` phase decided. Turns `select` did not ask,
and records below `min_submitted` that nobody reviewed, give nothing.

Reviewed turns (`aggregate.on_conflict: review`): the rows follow the votes that decided the
published answer (`loop.phases.review.review_votes`), read from `reviewed.jsonl` (which records the
review decided, and by whom) and `review_responses.jsonl` (the reviewers' submitted responses):
- one more labeler: their ranking joins the round's votes, replacing their own earlier ranking of the
  record, and the pairs are the Borda pairs of the merged votes (`annotators` counts the merged votes);
- an owner: the owner's response alone is final, so the pairs are the owner's ranking's (an owner's
  edit above every candidate), `chosen_by` the owner, `annotators` 1; the labelers' conflicting
  rankings of that turn give no pairs, as they did not decide the answer.
Either way the published answer is at the top of the turn's pairs (or tied there), and the rows
carry `reviewed_by` (`labeler`/`owner`; None for turns nobody reviewed) to filter on. A record queued
for review that nobody reviewed keeps the round's votes.

`preferences` (TRL's conversational preference format, explicit prompt), one row per pair:
- `prompt`: the conversation before the turn, as labelers and the model saw it (the round's input,
  system message included); `chosen`, `rejected`: one assistant message each.
- The aggregated ranking is aggregate's: Borda points summed over the annotators who ranked (tied
  candidates share their places' points, unranked ones tie for last). A candidate with more points is
  chosen over one with fewer; equal points are a tie and give no pair. Candidates with the same text
  (whitespace aside) are one answer, placed where its best copy is; a pair never has identical sides.
- An edited (written) answer counts as above every candidate: each distinct edit, whether or not it
  won the turn, is chosen over every candidate, with its editors as `chosen_by`. Two edits are not
  compared with each other. An "edit" equal to a candidate or to the current answer is not an edit.
- Provenance: `id` (stable: record id plus the two answers' slots, `edit-k` for edits), `example_id`,
  `turn` (index of the assistant message in `messages`), `round`, `chosen_source`/`rejected_source`
  (`original` | `model` | `edited`), `chosen_by`/`rejected_by` (usernames of the annotators who ranked
  chosen above rejected / the other way round; the rest tied them or did not rank), `annotators`
  (submitted responses), `margin` (chosen's minus rejected's Borda points; None for an edit pair),
  `agreement` (the turn's Kendall's W, None with one ranking) and `reviewed_by` (see above). Provenance goes only to the Hub/local
  revision, never to Argilla, so labelers still cannot tell an original from a model answer.

`preferences_kto` (TRL's conversational unpaired preference format): one row per distinct answer of
every turn that gave at least one pair: `prompt`, `completion` (one assistant message), `label`
(bool), plus `id`, `example_id`, `turn`, `round`, `source`, `annotators`, `reviewed_by`. `label` is True for each
edit and, when the turn has no edit and no "none acceptable" majority, for the candidates tied at
the top of the aggregated ranking; every other answer is False (a labeler writes an answer only when
no candidate is right).

A round without completed rankings publishes neither config (`datasets` cannot load a split without
rows): `load_dataset(repo, "preferences", revision="round-N")` then fails naming the configs the
revision has, and the card's lineage and `pickloop status` show 0 pairs for the round.

Labelers' names: `chosen_by`/`rejected_by` are usernames here; publish replaces them with stable
pseudonyms (`labeler-` + 10 hex digits of an HMAC of the username under the run home's secret
`shuffle_key`) unless `publish.labeler_names` is on, so a public dataset does not name its labelers
while their agreement can still be studied across rounds. Whoever holds the key file can recompute
the mapping (`pseudonym(username)`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loop.errors import StateError

if TYPE_CHECKING:
    import datasets

    from loop.data import Example
    from loop.phases.aggregate import Decision, RecordCandidates, Response

PAIRS_CONFIG = "preferences"
KTO_CONFIG = "preferences_kto"
CONFIGS = (PAIRS_CONFIG, KTO_CONFIG)


@dataclass(frozen=True)
class Answer:
    """One distinct answer of a turn, with its place in the aggregated ranking."""

    key: str
    """Slot name, or `edit-k` for the k-th distinct edit."""
    text: str
    source: str
    """`original`, `model` or `edited`."""
    points: Fraction | None
    """Borda points; None for an edit (above every candidate by rule)."""
    editors: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreferenceData:
    """A round's preference rows: `pairs` for the `preferences` config, `kto` for `preferences_kto`."""

    pairs: list[dict[str, Any]]
    kto: list[dict[str, Any]]

    def datasets(self) -> dict[str, datasets.Dataset]:
        """Config name -> Dataset, with explicit features so an empty round keeps the schema."""
        import datasets as hf_datasets

        def build(rows: list[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
            columns = {name: [row[name] for row in rows] for name in features}
            return hf_datasets.Dataset.from_dict(columns, features=features)

        return {PAIRS_CONFIG: build(self.pairs, pair_features()), KTO_CONFIG: build(self.kto, kto_features())}

    def counts(self) -> dict[str, int]:
        return {PAIRS_CONFIG: len(self.pairs), KTO_CONFIG: len(self.kto)}

    def pseudonymised(self, key: str) -> PreferenceData:
        """The same rows with every labeler username replaced by `pseudonym(name, key)`."""

        def swap(row: dict[str, Any]) -> dict[str, Any]:
            return {
                **row,
                "chosen_by": [pseudonym(n, key) for n in row["chosen_by"]],
                "rejected_by": [pseudonym(n, key) for n in row["rejected_by"]],
            }

        return PreferenceData([swap(r) for r in self.pairs], list(self.kto))


def pseudonym(username: str, key: str | None = None) -> str:
    """A stable stand-in for a labeler's name; `key` defaults to the run home's `shuffle_key()`."""
    import hashlib
    import hmac

    from loop.annotate import shuffle_key

    secret = (shuffle_key() if key is None else key).encode()
    digest = hmac.new(secret, b"labeler:" + username.encode(), hashlib.sha256).hexdigest()
    return f"labeler-{digest[:10]}"


def _messages():
    from datasets import List, Value

    return List({"role": Value("string"), "content": Value("string")})


def pair_features() -> datasets.Features:
    from datasets import Features, List, Value

    return Features(
        {
            "prompt": _messages(),
            "chosen": _messages(),
            "rejected": _messages(),
            "id": Value("string"),
            "example_id": Value("string"),
            "turn": Value("int64"),
            "round": Value("int64"),
            "chosen_source": Value("string"),
            "rejected_source": Value("string"),
            "chosen_by": List(Value("string")),
            "rejected_by": List(Value("string")),
            "annotators": Value("int64"),
            "margin": Value("float64"),
            "agreement": Value("float64"),
            "reviewed_by": Value("string"),
        }
    )


def kto_features() -> datasets.Features:
    from datasets import Features, Value

    return Features(
        {
            "prompt": _messages(),
            "completion": _messages(),
            "label": Value("bool"),
            "id": Value("string"),
            "example_id": Value("string"),
            "turn": Value("int64"),
            "round": Value("int64"),
            "source": Value("string"),
            "annotators": Value("int64"),
            "reviewed_by": Value("string"),
        }
    )


# --------------------------------------------------------------------------- one turn


def ranked_answers(record: RecordCandidates, responses: Sequence[Response]) -> list[Answer]:
    """The turn's distinct answers, best first: edits, then candidates by Borda points.

    Equal points keep slot order; a candidate whose text repeats a better-placed one is dropped.
    """
    from loop.phases.aggregate import _norm, borda_points

    slots = list(record.slots)
    points = {s: Fraction(0) for s in slots}
    for resp in responses:
        if resp.ranking:
            for slot, pts in borda_points(resp.ranking, slots).items():
                points[slot] += pts
    order = {s: i for i, s in enumerate(slots)}
    candidates: list[Answer] = []
    seen: set[str] = set()
    for slot in sorted(slots, key=lambda s: (-points[s], order[s])):
        text = record.slots[slot]
        if not _norm(text) or _norm(text) in seen:
            continue
        seen.add(_norm(text))
        source = "original" if slot == record.original_slot else "model"
        candidates.append(Answer(slot, text, source, points[slot]))
    offered = seen | {_norm(record.current)}
    edits: dict[str, list[Response]] = {}
    for resp in sorted(responses, key=lambda r: r.annotator):
        if resp.edited and _norm(resp.edited) and _norm(resp.edited) not in offered:
            edits.setdefault(_norm(resp.edited), []).append(resp)
    written = [
        Answer(f"edit-{k}", group[0].edited.strip(), "edited", None, tuple(r.annotator for r in group))  # type: ignore[union-attr]
        for k, group in enumerate(edits.values(), start=1)
    ]
    return written + candidates


def _place(ranking: Sequence[tuple[str, int]], slot: str) -> int | None:
    return next((int(rank) for s, rank in ranking if s == slot), None)


def _prefers(resp: Response, a: str, b: str) -> bool:
    """The annotator ranked slot `a` strictly above slot `b` (an unranked slot is below every ranked one)."""
    if not resp.ranking:
        return False
    pa, pb = _place(resp.ranking, a), _place(resp.ranking, b)
    return pa is not None and (pb is None or pa < pb)


def turn_rows(
    record: RecordCandidates,
    responses: Sequence[Response],
    prompt: Sequence[Mapping[str, str]],
    round_n: int,
    reviewed_by: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs, kto rows) of one completed turn; see the module docstring for the rules."""
    from loop.phases.aggregate import kendalls_w

    answers = ranked_answers(record, responses)
    rankings = [r.ranking for r in responses if r.ranking]
    agreement = kendalls_w(rankings, list(record.slots))
    prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    common = {"example_id": str(record.example_id), "turn": record.turn, "round": round_n}
    tag = {"reviewed_by": reviewed_by}
    pairs = []
    for i, chosen in enumerate(answers):
        for rejected in answers[i + 1 :]:
            if rejected.points is None:  # two edits: not compared
                continue
            if chosen.points is not None and chosen.points <= rejected.points:
                continue  # a tie
            if chosen.points is None:
                chosen_by, rejected_by, margin = list(chosen.editors), [], None
            else:
                chosen_by = sorted(r.annotator for r in responses if _prefers(r, chosen.key, rejected.key))
                rejected_by = sorted(r.annotator for r in responses if _prefers(r, rejected.key, chosen.key))
                margin = float(chosen.points - rejected.points)
            pairs.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": chosen.text}],
                    "rejected": [{"role": "assistant", "content": rejected.text}],
                    "id": f"{record.record_id}/{chosen.key}>{rejected.key}",
                    **common,
                    "chosen_source": chosen.source,
                    "rejected_source": rejected.source,
                    "chosen_by": chosen_by,
                    "rejected_by": rejected_by,
                    "annotators": len(responses),
                    "margin": margin,
                    "agreement": agreement,
                    **tag,
                }
            )
    if not pairs:
        return [], []
    flagged = 2 * sum(r.none_acceptable for r in responses) > len(responses)
    has_edit = any(a.points is None for a in answers)
    top = max((a.points for a in answers if a.points is not None), default=None)
    kto = [
        {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": a.text}],
            "label": a.points is None or (not has_edit and not flagged and a.points == top),
            "id": f"{record.record_id}/{a.key}",
            **common,
            "source": a.source,
            "annotators": len(responses),
            **tag,
        }
        for a in answers
    ]
    return pairs, kto


# --------------------------------------------------------------------------- a round


def round_preferences(
    round_n: int,
    records: Sequence[RecordCandidates],
    responses: Mapping[str, Sequence[Response]],
    conversations: Mapping[str, Sequence[Mapping[str, str]]],
    *,
    min_submitted: int = 1,
    reviewed_by: Mapping[str, str] | None = None,
) -> PreferenceData:
    """Every completed record's rows, in record (plan) order.

    `conversations` maps example id -> the round's input `messages`; a turn's prompt is the messages
    before it. `reviewed_by` maps the record ids the review decided to `owner`/`labeler`; their
    `responses` are the deciding votes (`merge_review`) and count as completed.
    """
    reviewed_by = reviewed_by or {}
    pairs: list[dict[str, Any]] = []
    kto: list[dict[str, Any]] = []
    for rec in records:
        got = responses.get(rec.record_id, ())
        if not got or (len(got) < min_submitted and rec.record_id not in reviewed_by):
            continue
        messages = conversations.get(str(rec.example_id))
        if messages is None or not 0 < rec.turn < len(messages):
            raise StateError(
                f"record {rec.record_id}: example {rec.example_id!r} turn {rec.turn} is not in the "
                "round's input; redo the round from push (`pickloop round redo push CONFIG`)"
            )
        p, k = turn_rows(rec, got, list(messages[: rec.turn]), round_n, reviewed_by.get(rec.record_id))
        pairs += p
        kto += k
    return PreferenceData(pairs, kto)


def merge_review(
    records: Sequence[RecordCandidates],
    responses: Mapping[str, Sequence[Response]],
    decisions: Sequence[Decision],
    review_rows: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, list[Response]], dict[str, str]]:
    """(record id -> the votes that decided it, record id -> `owner`/`labeler` for reviewed records).

    `decisions` are `reviewed.jsonl`'s, `review_rows` `review_responses.jsonl`'s (every response as
    pulled; only submitted ones count, rankings restricted to the record's slots). A row without the
    `owner` mark (written before it existed) counts as an owner's when the decision says an owner
    decided.
    """
    from loop.phases.aggregate import Response
    from loop.phases.review import review_votes

    slots = {r.record_id: r.slots for r in records}
    merged = {k: list(v) for k, v in responses.items()}
    by: dict[str, str] = {}
    for d in decisions:
        if not d.reviewed_by or d.record_id not in slots:
            continue
        rows = [r for r in review_rows if r.get("record") == d.record_id and r.get("status") == "submitted"]
        reviews = [
            Response(
                str(r["user"]),
                tuple((str(s), int(k)) for s, k in r.get("ranking") or () if s in slots[d.record_id]),
                r.get("better_answer"),
                bool(r.get("none_acceptable")),
            )
            for r in sorted(rows, key=lambda r: str(r["user"]))
        ]
        if not reviews:
            continue
        owners = {str(r["user"]) for r in rows if r.get("owner", d.reviewed_by == "owner")}
        merged[d.record_id], by[d.record_id] = review_votes(merged.get(d.record_id, ()), reviews, owners)
    return merged, by


def read_round(
    pulled: Path,
    examples: Sequence[Example],
    round_n: int,
    *,
    min_submitted: int = 1,
    reviewed: Path | None = None,
    review_responses: Path | None = None,
) -> PreferenceData:
    """A round's preference rows from its `pulled.json`, and from the review's `reviewed.jsonl` and
    `review_responses.jsonl` when the review phase decided records; none when nothing was pulled."""
    from loop.phases.aggregate import read_decisions, read_pulled

    if not pulled.exists():
        return PreferenceData([], [])
    records, responses, _, _ = read_pulled(pulled)
    by: dict[str, str] = {}
    if reviewed is not None and review_responses is not None and reviewed.exists():
        rows = []
        if review_responses.exists():
            text = review_responses.read_text(encoding="utf-8")
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        responses, by = merge_review(records, responses, read_decisions(reviewed), rows)
    conversations = {str(ex.id): ex.messages for ex in examples}
    return round_preferences(
        round_n, records, responses, conversations, min_submitted=min_submitted, reviewed_by=by
    )
