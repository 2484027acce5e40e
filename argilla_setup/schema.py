"""The round dataset's schema: what labelers see and answer, and what only the driver sees.

`round_settings` is the one place the Argilla settings of a round are defined; the push step fills
records with the names exported here and the pull step reads answers back by the same names. Candidate
slots are shuffled by the push step, and which slot holds the original answer (and which model and
temperature made each candidate) never reaches Argilla: it lives only in the round's push plan
(`loop.annotate.write_plan`), so no route, role or bug of the server can show it to a labeler. The
metadata says nothing about any single option: round, source, example and turn are visible to
annotators; the value scores (`SCORE_METADATA`, with `SchemaOptions.score_metadata`) are declared
`visible_for_annotators=False`, for owners to sort and filter on, since they could bias a labeler.

Record ids are deterministic (run, round, example, turn), so re-pushing a round upserts instead of
duplicating: `record_external_id` is the SDK's `rg.Record(id=...)` / the REST `external_id`, and
`record_uuid` is a stable server-side UUID derived from it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.errors import ConfigError

if TYPE_CHECKING:
    import argilla as rg

MIN_K = 2
MAX_K = 50  # Argilla's RankingQuestion accepts 2..50 options.

# Field, question and metadata names shared by push (loop/annotate.py) and pull (rankings.py).
QUESTION_FIELD = "question"  # single-turn context: a TextField
CONVERSATION_FIELD = "conversation"  # multi-turn context: a ChatField
RANKING_QUESTION = "ranking"
BETTER_ANSWER_QUESTION = "better_answer"
NONE_ACCEPTABLE_QUESTION = "none_acceptable"
NONE_ACCEPTABLE_YES = "yes"
NONE_ACCEPTABLE_NO = "no"

META_ROUND = "round"
META_SOURCE = "source"
META_EXAMPLE_ID = "example_id"
META_TURN = "turn"
SCORE_METADATA = {
    "value": "Value (selection)",
    "ifd_round": "IFD (round model)",
    "ifd_base": "IFD (base model)",
    "disagreement": "Candidate disagreement",
    "current_logprob": "Current answer log-prob",
}
"""Value scores of a record's turn (`loop/phases/score.py`, `loop/selection.py`), owners only."""

_RECORD_NAMESPACE = uuid.UUID("6f0c3a52-8a1e-4f43-9a57-1d1f0b7c2e11")
_ID_PART = re.compile(r"^[^/\s]+$")


def slot_name(i: int) -> str:
    """Name of candidate slot `i` (1-based): the TextField and the ranking value."""
    return f"candidate_{i}"


def slot_names(k: int) -> list[str]:
    return [slot_name(i) for i in range(1, k + 1)]


@dataclass(frozen=True)
class SchemaOptions:
    """Choices that shape a round's dataset (from the run config's annotate section)."""

    multi_turn: bool = False
    """Show the conversation as a chat (ChatField) instead of a single question (TextField)."""
    edit_question: bool = True
    """Offer an optional "write a better answer" text question (suggested with the top candidate)."""
    none_acceptable: bool = True
    """Offer an optional "none of the answers is acceptable" label."""
    min_submitted: int = 1
    """Annotators who must submit a record before it counts as completed."""
    sources: tuple[str, ...] | None = None
    """Allowed values of the `source` metadata (None: any string)."""
    score_metadata: bool = False
    """Declare the value scores as metadata hidden from annotators (see the module docstring)."""
    allow_extra_metadata: bool = False
    """Accept metadata keys not declared here (stored, not filterable). Never put provenance there:
    stock Argilla shows undeclared metadata to annotators by `GET /records/{id}` (pickloop's embedded
    server hides it, other deployments may not)."""


def validate_k(k: int) -> int:
    """K candidates per record must fit a RankingQuestion (2..50); raised before anything is created."""
    if isinstance(k, bool) or not isinstance(k, int) or not MIN_K <= k <= MAX_K:
        raise ConfigError(
            f"candidates per record must be an integer between {MIN_K} and {MAX_K} "
            f"(Argilla's ranking question limit), got {k!r}",
            key="k",
        )
    return k


def guidelines(round_n: int, k: int, options: SchemaOptions) -> str:
    """Markdown instructions shown to labelers: what to do, step by step, and when to skip."""
    context = "the conversation so far" if options.multi_turn else "the question"
    steps = [
        f"1. **Read {context}** at the top, then all {k} candidate answers.",
        "2. **Rank every candidate** from best (rank 1) to worst in the ranking question. "
        "A good answer is correct first, then complete, then clear and concise. "
        "**Ties are allowed**: give two answers the same rank when neither is better.",
    ]
    n = 3
    if options.edit_question:
        steps.append(
            f"{n}. **When no candidate is right**, write a correct answer in *Better answer* "
            "(it may be pre-filled with a candidate: fix it rather than start over). Leave it as is "
            "when the top-ranked answer is already right."
        )
        n += 1
    if options.none_acceptable:
        steps.append(
            f"{n}. Set *None acceptable* to **yes** when no candidate could be used as the answer, "
            "even after ranking them."
        )
        n += 1
    steps.append(f"{n}. **Submit.** Use *Save as draft* to come back to a record later.")
    return "\n".join(
        [
            f"# Round {round_n}: rank the candidate answers",
            "",
            "Each record shows "
            + context
            + f" and {k} candidate answers in random order. Some come from the current dataset, "
            "some from the model being trained. Your ranking decides which answer the next "
            "round's training data keeps.",
            "",
            "## What to do",
            "",
            *steps,
            "",
            "## When to discard",
            "",
            "Press **Discard** when the question itself is broken: unreadable, not a question, "
            "outside the domain, or impossible to answer from what is shown. Do not discard a record "
            "only because all answers are bad; rank them and write a better answer instead.",
            "",
            "## Tips",
            "",
            "- Judge the content, not the position: candidates are shuffled on every record.",
            "- An empty answer slot means the model had no further distinct answer: rank it last.",
            "- Use the metadata filters (round, source, example) to work through a subset.",
        ]
    )


def context_field(multi_turn: bool, client: rg.Argilla, answers: str) -> rg.TextField | rg.ChatField:
    """The record's question (`TextField`), or its conversation so far (`ChatField`); `answers` says
    what answers its last user turn, for the field's description."""
    import argilla as rg

    if multi_turn:
        return rg.ChatField(
            name=CONVERSATION_FIELD,
            title="Conversation",
            description=f"The conversation so far; {answers}.",
            _client=client,
        )
    return rg.TextField(name=QUESTION_FIELD, title="Question", use_markdown=True, client=client)


def round_settings(
    round_n: int, k: int, options: SchemaOptions | None = None, *, client: rg.Argilla | None = None
) -> rg.Settings:
    """The `rg.Settings` of round `round_n` with `k` candidate slots (validated before any import).

    Needs no server: the SDK wants a client object to build settings, so without `client` (or an
    existing default client) an offline placeholder is used; the settings bind to the real client of
    the `rg.Dataset` they are given to.
    """
    validate_k(k)
    if isinstance(round_n, bool) or not isinstance(round_n, int) or round_n < 0:
        raise ConfigError(f"round must be a non-negative integer, got {round_n!r}", key="round")
    options = options or SchemaOptions()
    if options.min_submitted < 1:
        raise ConfigError(
            f"min_submitted must be at least 1, got {options.min_submitted!r}", key="min_submitted"
        )

    import argilla as rg

    c = _sdk_client(client)
    context = context_field(options.multi_turn, c, "the candidates answer its last user turn")
    slots = slot_names(k)
    # Only the first slot is always filled: when the model gives fewer distinct answers than there are
    # slots, the rest stay empty (labelers rank them last; they can never win).
    fields: list = [context] + [
        rg.TextField(name=s, title=f"Answer {i}", use_markdown=True, required=i == 1, client=c)
        for i, s in enumerate(slots, 1)
    ]

    questions: list = [
        rg.RankingQuestion(
            name=RANKING_QUESTION,
            title="Rank the answers from best (1) to worst",
            description="Ties are allowed: give equally good answers the same rank.",
            values={s: f"Answer {i}" for i, s in enumerate(slots, 1)},
            required=True,
            client=c,
        )
    ]
    if options.edit_question:
        questions.append(
            rg.TextQuestion(
                name=BETTER_ANSWER_QUESTION,
                title="Better answer (optional)",
                description="Only when no candidate is right: write or fix the answer here.",
                required=False,
                use_markdown=True,
                client=c,
            )
        )
    if options.none_acceptable:
        questions.append(
            rg.LabelQuestion(
                name=NONE_ACCEPTABLE_QUESTION,
                title="None acceptable?",
                description="Yes when no candidate could be used as the answer.",
                labels={NONE_ACCEPTABLE_YES: "Yes, none is acceptable", NONE_ACCEPTABLE_NO: "No"},
                required=False,
                client=c,
            )
        )

    sources = list(options.sources) if options.sources else None
    metadata: list = [
        rg.IntegerMetadataProperty(name=META_ROUND, title="Round", min=0, client=c),
        rg.TermsMetadataProperty(name=META_SOURCE, title="Source", options=sources, client=c),
        rg.TermsMetadataProperty(name=META_EXAMPLE_ID, title="Example id", client=c),
        rg.IntegerMetadataProperty(name=META_TURN, title="Turn", min=0, client=c),
    ]
    if options.score_metadata:
        metadata += [
            rg.FloatMetadataProperty(name=name, title=title, visible_for_annotators=False, client=c)
            for name, title in SCORE_METADATA.items()
        ]

    return rg.Settings(
        fields=fields,
        questions=questions,
        metadata=metadata,
        guidelines=guidelines(round_n, k, options),
        allow_extra_metadata=options.allow_extra_metadata,
        distribution=rg.TaskDistribution(min_submitted=options.min_submitted),
    )


def _sdk_client(client: rg.Argilla | None) -> rg.Argilla:
    """`client`, else the SDK's default client, else an offline placeholder.

    The placeholder skips the SDK's connection check and, being a subclass, records itself as its own
    class's default, never as `rg.Argilla`'s, so a real client created later stays the SDK default.
    """
    import argilla as rg

    if client is not None:
        return client
    default = rg.Argilla._default_client  # where the SDK keeps its default client (2.8)
    if default is not None:
        return default

    class _OfflineArgilla(rg.Argilla):
        def _validate_connection(self) -> None:
            pass

    return _OfflineArgilla(api_url="http://127.0.0.1:9", api_key="offline-placeholder")


def dataset_name(run: str, round_n: int) -> str:
    """The Argilla dataset of a run's round: `<run>-round-<n>`."""
    return f"{_id_part(run, 'run')}-round-{round_n}"


def record_external_id(run: str, round_n: int, example_id: str, turn: int = 0) -> str:
    """Deterministic record id `run/round/example/turn`, used as `rg.Record(id=...)` / `external_id`."""
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        raise ValueError(f"turn must be a non-negative integer, got {turn!r}")
    return f"{_id_part(run, 'run')}/r{int(round_n)}/{_id_part(str(example_id), 'example id')}/t{turn}"


def record_uuid(run: str, round_n: int, example_id: str, turn: int = 0) -> uuid.UUID:
    """A stable server-side record UUID for the same (run, round, example, turn)."""
    return uuid.uuid5(_RECORD_NAMESPACE, record_external_id(run, round_n, example_id, turn))


def parse_record_external_id(external_id: str) -> tuple[str, int, str, int]:
    """Inverse of `record_external_id`: (run, round, example id, turn)."""
    try:
        run, r, example, t = external_id.split("/")
        if not (r.startswith("r") and t.startswith("t")):
            raise ValueError
        return run, int(r[1:]), example, int(t[1:])
    except ValueError:
        raise ValueError(f"not a pickloop record id: {external_id!r}") from None


def _id_part(value: str, what: str) -> str:
    if not value or not _ID_PART.match(value):
        raise ValueError(f"{what} {value!r} must be non-empty without '/' or whitespace")
    return value
