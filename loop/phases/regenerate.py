"""Phase `regenerate` (Self-Evolution's per-round data, `data.regenerate`): after the round's model is
trained, it writes new question-answer pairs from the documents, which join the round's dataset.

The documents are chunked and prompted exactly as `pickloop seed-data` does (`loop.seed`), with the
round's model (its adapter merged in memory) as the generator. New questions that repeat one already
in the dataset, an evaluation question (`eval`: the hold-out or `eval.path`), or another new one,
are dropped; ungrounded answers are dropped unless
`drop_ungrounded: false`. The pairs go to `regenerated.jsonl` (ids `<chunk id>-r<round>-q<i>`, with
seed-data's provenance columns and `round`), and `RoundContext.examples()` adds them to the round's
examples once this phase is done: the generate, score, push and aggregate phases treat them like the
others, so labelers rank the model's answers to them, the published revision holds them, and the
next round trains on them (as changed examples, under any `train.replay` mode).

A no-op (empty summary with the reason) in rounds before `from_round` or when `data.regenerate` is
unset. Resumable like seed-data: an interrupted phase continues from `regenerated.jsonl.partial`.
"""

from __future__ import annotations

from dataclasses import dataclass

from loop.context import RoundContext


@dataclass(frozen=True)
class Summary:
    skipped: str | None = None  # why nothing was generated (off, or a round before from_round)
    documents: int = 0
    chunks: int = 0
    chunks_reused: int = 0
    pairs_generated: int = 0
    parse_failures: int = 0
    duplicates_removed: int = 0
    ungrounded_dropped: int = 0
    added: int = 0


def run(ctx: RoundContext) -> Summary:
    settings = ctx.config.data.regenerate
    if settings is None:
        return Summary(skipped="data.regenerate is not set")
    if ctx.round < settings.from_round:
        return Summary(
            skipped=f"round {ctx.round} is before data.regenerate.from_round ({settings.from_round})"
        )
    from loop.seed.backends import LocalBackend
    from loop.seed.documents import read_dataset, read_documents
    from loop.seed.pipeline import SeedSettings, seed_data
    from loop.seed.prompts import CONVERSATION_TEMPLATE, QA_TEMPLATE, load_template

    examples = ctx.examples()
    ctx.limit_cpu_threads()
    if settings.text_column:
        docs = [d for path in settings.docs for d in read_dataset(path, settings.text_column)]
    else:
        docs = read_documents(settings.docs)
    backend = LocalBackend(
        ctx.paths.model, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
    )
    seed_settings = SeedSettings(
        qa_template=load_template(settings.prompt_file or QA_TEMPLATE),
        conversation_template=load_template(CONVERSATION_TEMPLATE),
        pairs_per_chunk=settings.pairs_per_chunk,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.overlap_tokens,
        dedup_threshold=settings.dedup_threshold,
        grounding_threshold=settings.grounding_threshold,
        drop_ungrounded=settings.drop_ungrounded,
    )
    questions = [next(m["content"] for m in ex.messages if m["role"] == "user") for ex in examples]
    questions += evaluation_questions(ctx)  # a new pair must not teach an evaluation question
    done = seed_data(
        docs,
        backend,
        seed_settings,
        ctx.paths.regenerated,
        progress=ctx.progress,
        id_tag=f"-r{ctx.round}",
        existing_questions=questions,
        allow_empty=True,
        extra_columns={"round": ctx.round},
    )
    ctx.report(
        f"round {ctx.round}: regenerate added {done.kept} new pair(s) from {done.chunks} chunk(s) "
        f"({done.duplicates_removed} duplicates, {done.ungrounded_dropped} ungrounded dropped, "
        f"{done.parse_failures} unparsed)"
    )
    if done.kept:
        from loop.data import load_examples

        ctx._examples = examples + load_examples(ctx.paths.regenerated)  # what the next phases get
    return Summary(
        documents=done.documents,
        chunks=done.chunks,
        chunks_reused=done.chunks_reused,
        pairs_generated=done.pairs_generated,
        parse_failures=done.parse_failures,
        duplicates_removed=done.duplicates_removed,
        ungrounded_dropped=done.ungrounded_dropped,
        added=done.kept,
    )


def evaluation_questions(ctx: RoundContext) -> list[str]:
    """The user turns of `eval`'s questions (held out, or from `eval.path`), to keep out of training."""
    from loop.data import load_examples
    from loop.evaluation.questions import question_of

    e = ctx.config.eval
    if e.path is not None:
        examples = load_examples(e.path, revision=e.revision, split=e.split, answer_optional=True)
    elif ctx.run.holdout.exists():
        examples = load_examples(ctx.run.holdout)
    else:
        return []
    return [question_of(ex).prompt for ex in examples]
