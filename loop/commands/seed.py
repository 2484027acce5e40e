"""`pickloop seed-data`: documents -> the step-1 QA dataset (logic in `loop.seed`)."""

from __future__ import annotations

from pathlib import Path

import click

from loop.seed.prompts import CONVERSATION_TEMPLATE, QA_TEMPLATE


def _epilog() -> str:
    """The default prompt, verbatim (`\b` keeps click from re-wrapping each paragraph)."""
    paragraphs = QA_TEMPLATE.read_text(encoding="utf-8").strip().split("\n\n")
    shown = "\n\n".join("\b\n" + p for p in paragraphs)
    return (
        f"\b\nDefault question-answer prompt (loop/seed/prompts/{QA_TEMPLATE.name}; {{title}}, {{chunk}} "
        f"and {{n}} are filled in):\n\n{shown}\n\n\b\nThe conversation prompt is "
        f"loop/seed/prompts/{CONVERSATION_TEMPLATE.name}; --prompt-file and --conversation-prompt-file "
        "replace them."
    )


@click.command(name="seed-data", epilog=_epilog())
@click.argument("docs", nargs=-1, required=True)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Step-1 JSONL to write."
)
@click.option(
    "--model",
    required=True,
    help="Local model folder, Hub id or round folder; with --endpoint, the served model's name.",
)
@click.option(
    "--endpoint",
    default=None,
    help="OpenAI-compatible server URL (e.g. http://127.0.0.1:8000/v1) instead of a local model.",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (mode 0600) with the endpoint's key; else PICKLOOP_SEED_API_KEY or OPENAI_API_KEY.",
)
@click.option(
    "--prompt-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Question-answer prompt template (default below).",
)
@click.option(
    "--conversation-prompt-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Conversation prompt template.",
)
@click.option(
    "--pairs-per-chunk",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Question-answer pairs asked per chunk.",
)
@click.option(
    "--conversations",
    type=click.IntRange(0, 10),
    default=0,
    show_default=True,
    help="Short multi-turn conversations asked per chunk.",
)
@click.option(
    "--chunk-tokens",
    type=click.IntRange(16),
    default=512,
    show_default=True,
    help="Token budget of a chunk (the model's tokenizer; words for an endpoint).",
)
@click.option(
    "--overlap-tokens",
    type=click.IntRange(0),
    default=64,
    show_default=True,
    help="Tokens a chunk repeats from the previous one in the same section.",
)
@click.option(
    "--max-new-tokens", type=click.IntRange(1), default=512, show_default=True, help="Longest completion."
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Chunks decoded together by a local model.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Endpoint sampling temperature (a local model decodes greedily).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=120.0,
    show_default=True,
    help="Seconds per endpoint request.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=3,
    show_default=True,
    help="Retries of a failed endpoint request.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=None,
    help="Only the first N chunks (a dry run; the full run continues from it).",
)
@click.option(
    "--dedup-threshold",
    type=click.FloatRange(0, 1),
    default=0.85,
    show_default=True,
    help="Token F1 at which two questions count as duplicates.",
)
@click.option(
    "--grounding-threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Answers with less of their words in the chunk are flagged `ungrounded`.",
)
@click.option(
    "--drop-ungrounded", is_flag=True, help="Drop flagged answers instead of keeping them with the flag."
)
@click.option(
    "--text-column",
    default=None,
    help="DOCS are HF datasets (folder, data file or Hub id); each row's text is a document.",
)
@click.option("--split", default="train", show_default=True, help="Split of an HF dataset.")
def seed_data(
    docs: tuple[str, ...],
    out: Path,
    model: str,
    endpoint: str | None,
    api_key_file: Path | None,
    prompt_file: Path | None,
    conversation_prompt_file: Path | None,
    pairs_per_chunk: int,
    conversations: int,
    chunk_tokens: int,
    overlap_tokens: int,
    max_new_tokens: int,
    batch_size: int,
    temperature: float,
    timeout: float,
    retries: int,
    limit: int | None,
    dedup_threshold: float,
    grounding_threshold: float,
    drop_ungrounded: bool,
    text_column: str | None,
    split: str,
) -> None:
    """Build the step-1 dataset from documents: question-answer pairs per chunk, with provenance.

    DOCS are files or folders of Markdown, text, HTML (and PDF with pypdf), or HF datasets with
    --text-column. Each chunk (headings and paragraphs under --chunk-tokens) is given to a local model
    or an OpenAI-compatible endpoint with the prompt template; near-duplicate questions are removed,
    answers whose words are not in their chunk are flagged, and every row records its chunk, document,
    character offsets, generator and prompt hash. Interrupted? Re-run the same command: it continues.
    """
    from rich.console import Console
    from rich.table import Table

    from loop.seed.backends import EndpointBackend, LocalBackend, api_key
    from loop.seed.documents import read_dataset, read_documents
    from loop.seed.pipeline import SeedSettings
    from loop.seed.pipeline import seed_data as run_seed
    from loop.seed.prompts import load_template

    settings = SeedSettings(
        qa_template=load_template(prompt_file or QA_TEMPLATE),
        conversation_template=load_template(conversation_prompt_file or CONVERSATION_TEMPLATE),
        pairs_per_chunk=pairs_per_chunk,
        conversations=conversations,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        limit=limit,
        dedup_threshold=dedup_threshold,
        grounding_threshold=grounding_threshold,
        drop_ungrounded=drop_ungrounded,
    )
    if text_column:
        documents = [d for path in docs for d in read_dataset(path, text_column, split=split)]
    else:
        documents = read_documents(docs)
    if endpoint:
        backend = EndpointBackend(
            endpoint,
            model,
            key=api_key(api_key_file),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            timeout=timeout,
            max_tries=retries + 1,
        )
    else:
        backend = LocalBackend(model, max_new_tokens=max_new_tokens, batch_size=batch_size)
    try:
        summary = run_seed(documents, backend, settings, out, progress=True)
    finally:
        if isinstance(backend, EndpointBackend):
            backend.close()
    table = Table(title=f"seed-data → {out}")
    table.add_column("")
    table.add_column("count", justify="right")
    for label, value in (
        ("documents", summary.documents),
        ("chunks", summary.chunks),
        ("  generated now", summary.chunks_generated),
        ("  from the interrupted run", summary.chunks_reused),
        ("pairs generated", summary.pairs_generated),
        ("conversations generated", summary.conversations_generated),
        ("parse failures", summary.parse_failures),
        ("duplicates removed", summary.duplicates_removed),
        ("ungrounded " + ("dropped" if drop_ungrounded else "flagged"), summary.ungrounded_flagged),
        ("kept", summary.kept),
    ):
        table.add_row(label, str(value))
    Console().print(table)
    if not summary.complete:
        click.echo(f"Stopped after --limit {limit} chunk(s); re-run without --limit to continue.")


_API_URL = click.option(
    "--api-url",
    envvar="ARGILLA_API_URL",
    show_envvar=True,
    default=None,
    help="Argilla deployment (key from ARGILLA_API_KEY); default: the embedded server.",
)
_DATASET = click.option(
    "--dataset", default=None, help="Review dataset name (default: seed-review-<file name>)."
)
_WORKSPACE = click.option("--workspace", default="pickloop", show_default=True, help="Argilla workspace.")


def _review_target(step1: Path, dataset: str | None, api_url: str | None):
    import re

    from argilla_setup.connection import resolve_connection

    name = dataset or "seed-review-" + re.sub(r"[^A-Za-z0-9_-]+", "-", step1.stem).strip("-")
    return resolve_connection(api_url), name


@click.group(name="seed-review")
def seed_review() -> None:
    """Review generated pairs in Argilla before round 1 (optional).

    `push` puts each question-answer pair of a seed-data file in an Argilla dataset beside its
    passage; labelers accept or reject it and may fix the question or answer. `pull` writes the
    accepted (and fixed) pairs: that file becomes `data.path`.
    """


@seed_review.command(name="push")
@click.argument("step1", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("docs", nargs=-1, required=True)
@_DATASET
@_WORKSPACE
@_API_URL
def review_push(
    step1: Path, docs: tuple[str, ...], dataset: str | None, workspace: str, api_url: str | None
) -> None:
    """Push STEP1's pairs for review, with their passages from DOCS (the documents seed-data read).

    Idempotent: records are keyed by row id, so a re-push updates them.
    """
    from loop.seed import review
    from loop.seed.documents import read_documents

    conn, name = _review_target(step1, dataset, api_url)
    result = review.push(conn, review.read_rows(step1), read_documents(docs), name=name, workspace=workspace)
    click.echo(f"{result.records} pair(s) to review in {result.name}: {result.url}")


@seed_review.command(name="pull")
@click.argument("step1", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Reviewed JSONL to write."
)
@_DATASET
@_WORKSPACE
@_API_URL
def review_pull(step1: Path, out: Path, dataset: str | None, workspace: str, api_url: str | None) -> None:
    """Write STEP1's accepted pairs (with the labelers' fixes) to --out; rejected and unreviewed ones
    are left out. Conversation rows pass through unchanged."""
    from loop.seed import review

    conn, name = _review_target(step1, dataset, api_url)
    got = review.pull(conn, review.read_rows(step1), name=name, workspace=workspace, out=out)
    click.echo(
        f"Wrote {out}: {got.accepted} accepted, {got.edited} edited, {got.rejected} rejected, "
        f"{got.pending} not reviewed yet"
        + (f", {got.passed_through} conversation(s) kept" if got.passed_through else "")
    )
