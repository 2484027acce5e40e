"""The schema of a blind pairwise evaluation dataset: one question, Answer A and Answer B, which is better.

Which model wrote which answer never reaches Argilla (as with a round's candidates): records carry the
question's context, the two answers in an order shuffled per record, and a question id; the external
id is a keyed hash. The pairing lives only in the evaluation's `pairs.jsonl` on the driver's machine,
so no route, role or bug of any Argilla deployment can show an annotator which model is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from argilla_setup.schema import _sdk_client, context_field

if TYPE_CHECKING:
    import argilla as rg

ANSWER_A = "answer_a"
ANSWER_B = "answer_b"
PREFERENCE_QUESTION = "preference"
COMMENT_QUESTION = "comment"
PREFER_A, PREFER_B, PREFER_TIE = "a", "b", "tie"
PREFERENCE_LABELS = {
    PREFER_A: "Answer A is better",
    PREFER_B: "Answer B is better",
    PREFER_TIE: "Tie: equally good (or equally bad)",
}
META_QUESTION_ID = "question_id"


@dataclass(frozen=True)
class PairwiseOptions:
    multi_turn: bool = False
    min_submitted: int = 1


def guidelines(options: PairwiseOptions) -> str:
    context = "the conversation so far" if options.multi_turn else "the question"
    return "\n".join(
        [
            "# Which answer is better?",
            "",
            f"Each record shows {context} and two answers, **Answer A** and **Answer B**, written by two "
            "different versions of a model. Which version wrote which answer is hidden, and the two "
            "positions are shuffled on every record: judge the content only.",
            "",
            "## What to do",
            "",
            f"1. Read {context}, then both answers.",
            "2. Pick **Answer A is better** or **Answer B is better**: correct first, then complete, then "
            "clear and concise.",
            "3. Pick **Tie** only when neither is better (both right, or both wrong to the same degree).",
            "4. Optionally say why in the comment, then **Submit**.",
        ]
    )


def pairwise_settings(
    options: PairwiseOptions | None = None, *, client: rg.Argilla | None = None
) -> rg.Settings:
    """The `rg.Settings` of an evaluation dataset (validated; no server needed, as `round_settings`)."""
    import argilla as rg

    options = options or PairwiseOptions()
    c = _sdk_client(client)
    context = context_field(options.multi_turn, c, "both answers answer its last user turn")
    fields = [
        context,
        rg.TextField(name=ANSWER_A, title="Answer A", use_markdown=True, required=True, client=c),
        rg.TextField(name=ANSWER_B, title="Answer B", use_markdown=True, required=True, client=c),
    ]
    questions = [
        rg.LabelQuestion(
            name=PREFERENCE_QUESTION,
            title="Which answer is better?",
            labels=dict(PREFERENCE_LABELS),
            required=True,
            client=c,
        ),
        rg.TextQuestion(
            name=COMMENT_QUESTION,
            title="Comment (optional)",
            description="Why, in a few words.",
            required=False,
            client=c,
        ),
    ]
    metadata = [rg.TermsMetadataProperty(name=META_QUESTION_ID, title="Question id", client=c)]
    return rg.Settings(
        fields=fields,
        questions=questions,
        metadata=metadata,
        guidelines=guidelines(options),
        allow_extra_metadata=False,
        distribution=rg.TaskDistribution(min_submitted=options.min_submitted),
    )


def dataset_name(run: str, name: str) -> str:
    """The Argilla dataset of one evaluation: `<run>-eval-<name>`."""
    return f"{run}-eval-{name}"
