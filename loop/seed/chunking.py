"""Chunking: headings start a chunk, paragraphs are packed under a token budget, with overlap.

A chunk never spans two sections (a Markdown heading, or an HTML `<h1>`..`<h6>`, starts a new one
unless the chunk so far holds only headings). Paragraphs are packed until the next one would pass
`max_tokens`; a paragraph alone over the budget is cut at word boundaries (or inside a word that is
itself over it). A new chunk inside a section starts with the previous chunk's last paragraphs (or
words) up to `overlap_tokens`, so a fact cut at a boundary is whole in one of the two.

Every chunk keeps its document id, title and character offsets into the document's text, and its id
is a hash of those and its text: the same documents and settings give the same chunk ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loop.seed.documents import Document

CountTokens = Callable[[str], int]


def whitespace_tokens(text: str) -> int:
    """Token count when the generator's tokenizer is unknown (an endpoint): whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    title: str
    start: int  # character offsets into the document's text: text == document.text[start:end]
    end: int
    text: str
    tokens: int


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    heading: bool
    tokens: int


def chunk_id(doc_id: str, start: int, end: int, text: str) -> str:
    digest = hashlib.sha256(json.dumps([doc_id, start, end, text], ensure_ascii=False).encode()).hexdigest()
    return "c-" + digest[:16]


_HEADING = re.compile(r"#{1,6}\s")


def _paragraphs(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_heading) of each paragraph: blank-line separated blocks; a heading line is its own."""
    out = []
    for block in re.finditer(r"\S(?:.*?\S)?(?=\n[ \t]*\n|\s*\Z)", text, flags=re.S):
        start = block.start()
        for line in re.finditer(r"[^\n]+", block.group()):
            if _HEADING.match(line.group().lstrip()):
                if line.start() > 0:
                    out.append((start, block.start() + line.start(), False))
                out.append((block.start() + line.start(), block.start() + line.end(), True))
                start = block.start() + line.end()
        rest = text[start : block.end()]
        if rest.strip():
            lead = len(rest) - len(rest.lstrip())
            out.append((start + lead, block.end(), False))
    return [(s, s + len(text[s:e].rstrip()), h) for s, e, h in out if text[s:e].strip()]


def _split(
    text: str, start: int, end: int, max_tokens: int, overlap_tokens: int, count: CountTokens
) -> list[_Unit]:
    """Cut text[start:end] into pieces of at most `max_tokens` that overlap by about `overlap_tokens`:
    at word boundaries, inside a word that is itself over the budget."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    pieces: list[_Unit] = []
    i = 0
    while i < len(words):
        lo, hi = i + 1, len(words)  # most words from i that fit: binary search on the token count
        if count(text[words[i][0] : words[i][1]]) > max_tokens:
            pieces += _split_word(text, *words[i], max_tokens, count)
            i += 1
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[words[i][0] : words[mid - 1][1]]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        s, e = words[i][0], words[lo - 1][1]
        pieces.append(_Unit(s, e, False, count(text[s:e])))
        if lo == len(words):
            break
        back = lo
        while back - 1 > i + 1 and count(text[words[back - 1][0] : e]) <= overlap_tokens:
            back -= 1
        i = back
    return pieces


def _split_word(text: str, start: int, end: int, max_tokens: int, count: CountTokens) -> list[_Unit]:
    pieces, s = [], start
    while s < end:
        e = min(end, s + max(1, max_tokens))
        while e > s + 1 and count(text[s:e]) > max_tokens:
            e = s + (e - s) // 2
        pieces.append(_Unit(s, e, False, count(text[s:e])))
        s = e
    return pieces


def chunk_document(
    doc: Document, max_tokens: int, overlap_tokens: int = 0, count: CountTokens = whitespace_tokens
) -> list[Chunk]:
    """The document's chunks, in order (see the module docstring for the rules)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 2))
    text = doc.text
    units: list[_Unit] = []
    for s, e, heading in _paragraphs(text):
        n = count(text[s:e])
        units += (
            [_Unit(s, e, heading, n)]
            if n <= max_tokens
            else _split(text, s, e, max_tokens, overlap_tokens, count)
        )
    chunks: list[Chunk] = []
    current: list[_Unit] = []
    fresh = 0  # units of `current` that are not overlap carried from the previous chunk

    def flush() -> None:
        if fresh:
            s, e = current[0].start, current[-1].end
            body = text[s:e]
            chunks.append(
                Chunk(chunk_id(doc.doc_id, s, e, body), doc.doc_id, doc.title, s, e, body, count(body))
            )

    for unit in units:
        section_break = unit.heading and any(not u.heading for u in current)
        over = count(text[current[0].start : unit.end]) > max_tokens if current else False
        if any(not u.heading for u in current) and (section_break or over):
            flush()
            carry: list[_Unit] = []
            if not section_break and overlap_tokens:
                end = current[-1].end
                for u in reversed(current):  # the last paragraphs that fit in the overlap
                    if u.heading or count(text[u.start : end]) > overlap_tokens:
                        break
                    carry.insert(0, u)
                while carry and count(text[carry[0].start : unit.end]) > max_tokens:
                    carry.pop(0)
            current, fresh = carry, 0
        current.append(unit)
        fresh += 1
    if current:
        flush()
    return chunks


def chunk_documents(
    docs: Sequence[Document], max_tokens: int, overlap_tokens: int = 0, count: CountTokens = whitespace_tokens
) -> list[Chunk]:
    return [c for doc in docs for c in chunk_document(doc, max_tokens, overlap_tokens, count)]
