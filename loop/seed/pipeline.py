"""The seed-data run: documents -> chunks -> prompts -> completions -> pairs -> step-1 JSONL.

Resumable: each batch of chunks is appended to `<out>.partial` (JSON lines, one per chunk, after a
header naming the settings) before the next starts, so an interrupted run loses at most one batch and
a re-run with the same settings generates only the chunks not in it. A torn last line (a kill during
the write) is dropped. The output is written at the end, atomically, and the partial file removed;
a run cut short (`limit`) writes the output of the chunks it did and keeps the partial file, so the
full run continues from there. Any error leaves the output file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop.data import validate_rows
from loop.errors import ConfigError, DataError
from loop.fsutil import write_text
from loop.seed.backends import Backend
from loop.seed.chunking import Chunk, chunk_documents
from loop.seed.documents import Document
from loop.seed.parse import parse_conversations, parse_pairs
from loop.seed.prompts import Template
from loop.seed.quality import duplicate_indices, grounding

PARTIAL_VERSION = 1


@dataclass(frozen=True)
class SeedSettings:
    qa_template: Template
    conversation_template: Template
    pairs_per_chunk: int = 3
    conversations: int = 0  # conversations per chunk (0: none)
    chunk_tokens: int = 512
    overlap_tokens: int = 64
    limit: int | None = None  # chunks to do in this run (a dry run)
    dedup_threshold: float = 0.85
    grounding_threshold: float = 0.5
    drop_ungrounded: bool = False


@dataclass
class SeedSummary:
    documents: int = 0
    chunks: int = 0
    chunks_generated: int = 0
    chunks_reused: int = 0  # from an interrupted run's partial file
    pairs_generated: int = 0
    conversations_generated: int = 0
    parse_failures: int = 0  # completions in which nothing parsed
    duplicates_removed: int = 0
    ungrounded_flagged: int = 0
    ungrounded_dropped: int = 0
    kept: int = 0
    complete: bool = True  # every chunk done (False after --limit): the partial file is kept
    out: str = ""


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def settings_key(backend: Backend, settings: SeedSettings) -> str:
    """What decides a chunk's completions: a partial file made under another key is not reused."""
    key = [
        PARTIAL_VERSION,
        backend.name,
        getattr(backend, "fingerprint", None),
        getattr(backend, "max_new_tokens", None),
        getattr(backend, "temperature", None),
        settings.qa_template.sha256,
        settings.conversation_template.sha256 if settings.conversations else None,
        settings.pairs_per_chunk,
        settings.conversations,
    ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def _read_partial(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """Finished chunks of an interrupted run with the same settings; torn or foreign lines ignored."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").split("\n")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        return {}
    if not isinstance(header, dict) or header.get("key") != key:
        return {}
    done: dict[str, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the torn last line of a killed run
        if isinstance(record, dict) and isinstance(record.get("chunk_id"), str):
            done[record["chunk_id"]] = record
    return done


def _open_partial(path: Path, key: str, done: dict[str, dict[str, Any]]):
    """The partial file rewritten with the reusable records (a torn line or old settings dropped), open
    for appending."""
    header = json.dumps({"pickloop_seed": PARTIAL_VERSION, "key": key})
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values())
    write_text(path, header + "\n" + body)
    return path.open("a", encoding="utf-8")


def _prompts(chunk: Chunk, settings: SeedSettings) -> list[str]:
    prompts = [settings.qa_template.render(chunk.title, chunk.text, settings.pairs_per_chunk)]
    if settings.conversations:
        prompts.append(settings.conversation_template.render(chunk.title, chunk.text, settings.conversations))
    return prompts


def _check_fit(chunks: Sequence[Chunk], backend: Backend, settings: SeedSettings) -> None:
    for chunk in chunks:
        for prompt in _prompts(chunk, settings):
            over = backend.prompt_overflow(prompt)
            if over:
                raise ConfigError(
                    f"a prompt for {chunk.doc_id} (characters {chunk.start}-{chunk.end}) needs {over[0]} tokens "
                    f"with the new tokens, over the model's context of {over[1]}; lower --chunk-tokens "
                    "or --max-new-tokens",
                    key="--chunk-tokens",
                )


def generate_records(
    chunks: Sequence[Chunk],
    backend: Backend,
    settings: SeedSettings,
    out: Path,
    *,
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], SeedSummary]:
    """Each chunk's parsed completions, from the partial file or the backend, in chunk order."""
    summary = SeedSummary(chunks=len(chunks))
    key = settings_key(backend, settings)
    partial = partial_path(out)
    done = _read_partial(partial, key)
    todo = [c for c in chunks if c.chunk_id not in done]
    summary.chunks_reused = len(chunks) - len(todo)
    _check_fit(todo, backend, settings)
    from tqdm.auto import tqdm

    with (
        _open_partial(partial, key, done) as f,
        tqdm(
            total=len(chunks),
            initial=summary.chunks_reused,
            desc="seed-data chunks",
            unit="chunk",
            disable=not progress,
        ) as bar,
    ):
        step = max(1, backend.batch_size)
        for start in range(0, len(todo), step):
            batch = todo[start : start + step]
            prompts = [_prompts(c, settings) for c in batch]
            flat = [p for per in prompts for p in per]
            completions = iter(backend.complete(flat))
            for chunk, per in zip(batch, prompts, strict=True):
                qa_text = next(completions)
                conv_text = next(completions) if len(per) > 1 else None
                record = {
                    "chunk_id": chunk.chunk_id,
                    "pairs": parse_pairs(qa_text),
                    "conversations": parse_conversations(conv_text) if conv_text is not None else [],
                    "failures": 0,
                }
                record["failures"] = int(not record["pairs"]) + int(
                    conv_text is not None and not record["conversations"]
                )
                done[chunk.chunk_id] = record
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            summary.chunks_generated += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(summary.chunks_generated)
    return [done[c.chunk_id] for c in chunks], summary


def build_rows(
    chunks: Sequence[Chunk],
    records: Sequence[dict[str, Any]],
    backend_name: str,
    settings: SeedSettings,
    summary: SeedSummary,
    *,
    id_tag: str = "",
    existing_questions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Step-1 rows with provenance; duplicates (of each other, or of `existing_questions`) removed,
    grounding scored (and counted in `summary`). Row ids: `<chunk id><id_tag>-q<i>` / `-c<i>`."""
    candidates: list[tuple[str, dict[str, Any]]] = []  # (first question, row)
    for chunk, record in zip(chunks, records, strict=True):
        summary.parse_failures += record["failures"]
        base = {
            "chunk_id": chunk.chunk_id,
            "doc_id": chunk.doc_id,
            "doc_title": chunk.title,
            "char_start": chunk.start,
            "char_end": chunk.end,
            "generator": backend_name,
        }
        for i, (question, answer) in enumerate(record["pairs"]):
            summary.pairs_generated += 1
            score = round(grounding(answer, chunk.text), 4)
            row = {
                "id": f"{chunk.chunk_id}{id_tag}-q{i}",
                "question": question,
                "answer": answer,
                **base,
                "prompt_sha256": settings.qa_template.sha256,
                "grounding": score,
                "ungrounded": score < settings.grounding_threshold,
            }
            candidates.append((question, row))
        for i, messages in enumerate(record["conversations"]):
            summary.conversations_generated += 1
            answers = [m["content"] for m in messages if m["role"] == "assistant"]
            score = round(min(grounding(a, chunk.text) for a in answers), 4)
            row = {
                "id": f"{chunk.chunk_id}{id_tag}-c{i}",
                "messages": messages,
                **base,
                "prompt_sha256": settings.conversation_template.sha256,
                "grounding": score,
                "ungrounded": score < settings.grounding_threshold,
            }
            candidates.append((messages[0]["content"], row))
    known = len(existing_questions)
    questions = [*existing_questions, *(q for q, _ in candidates)]
    duplicates = {i - known for i in duplicate_indices(questions, settings.dedup_threshold) if i >= known}
    summary.duplicates_removed = len(duplicates)
    rows = [row for i, (_, row) in enumerate(candidates) if i not in duplicates]
    summary.ungrounded_flagged = sum(r["ungrounded"] for r in rows)
    if settings.drop_ungrounded:
        summary.ungrounded_dropped = summary.ungrounded_flagged
        rows = [r for r in rows if not r["ungrounded"]]
    summary.kept = len(rows)
    return rows


def seed_data(
    docs: Sequence[Document],
    backend: Backend,
    settings: SeedSettings,
    out: str | Path,
    *,
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
    id_tag: str = "",
    existing_questions: Sequence[str] = (),
    allow_empty: bool = False,
    extra_columns: dict[str, Any] | None = None,
) -> SeedSummary:
    """Generate the step-1 dataset from `docs` into `out` (JSONL); see the module docstring.

    `id_tag`, `existing_questions`, `allow_empty` and `extra_columns` are for a round's regeneration
    (`loop.phases.regenerate`): distinct ids, no repeat of the dataset's questions, an empty result
    written rather than refused, and the round on every row."""
    out = Path(out)
    if out.is_dir():
        raise DataError("is a folder; --out names the JSONL file to write", file=out)
    if out.suffix not in (".jsonl", ".json"):
        raise DataError("--out must end in .jsonl (the step-1 format `pickloop run` reads)", file=out)
    chunks = chunk_documents(docs, settings.chunk_tokens, settings.overlap_tokens, backend.count_tokens)
    total = len(chunks)
    if settings.limit is not None:
        chunks = chunks[: settings.limit]
    records, summary = generate_records(chunks, backend, settings, out, progress=progress, on_batch=on_batch)
    summary.documents = len({c.doc_id for c in chunks})
    summary.complete = len(chunks) == total
    summary.chunks = len(chunks)
    rows = build_rows(
        chunks, records, backend.name, settings, summary, id_tag=id_tag, existing_questions=existing_questions
    )
    rows = [{**r, **(extra_columns or {})} for r in rows]
    if not rows and not allow_empty:
        raise DataError(
            f"no question-answer pairs kept from {len(chunks)} chunk(s) ({summary.parse_failures} completions "
            f"did not parse, {summary.duplicates_removed} duplicates, {summary.ungrounded_dropped} ungrounded "
            "dropped); check the model, the prompt template or --drop-ungrounded",
            file=out,
        )
    if rows:
        validate_rows(enumerate(rows, start=1), str(out), row_word="row")  # what `pickloop run` accepts
    write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if summary.complete:
        partial_path(out).unlink(missing_ok=True)
    summary.out = str(out)
    return summary
