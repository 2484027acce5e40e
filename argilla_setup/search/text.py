"""Full-text search for `argilla_setup.search.query`: the standard analyzer, Lucene's simple query syntax, BM25.

Why separate: this is the one part of the interpreter that is about text rather than the query DSL. It
follows what Elasticsearch does for the `simple_query_string` queries argilla-server sends: the query
is parsed left to right like Lucene's SimpleQueryParser (lenient, never a syntax error), each term is
analysed per field, fields combine like a dis_max with tie_breaker 1 (scores add up), and terms score
with Lucene 9's BM25. Prefix and fuzzy terms score a constant 1 per field, as Elasticsearch's rewrites do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from argilla_setup.search.query import Doc

__all__ = ["BoolNode", "Not", "Phrase", "Term", "TextSearch", "analyze", "parse_simple_query"]


class Scorer(Protocol):
    """What the text search needs from a search context: BM25 of a term in a document's field."""

    def bm25(self, path: str, field_type: str, term: str, freq: int, length: int) -> float: ...


_TOKEN_RE = re.compile(r"\w+(?:['’.]\w+)*")


def analyze(text: str) -> list[str]:
    """The standard analyzer, approximately: Unicode word tokens, lower-cased."""
    return _TOKEN_RE.findall(text.lower())


@dataclass
class Term:
    """A word: `prefix*` or `fuzzy~N` when marked so."""

    text: str
    prefix: bool = False
    fuzzy: int | None = None


@dataclass
class Phrase:
    """A quoted phrase; `"..."~N` allows N positions of slop."""

    text: str
    slop: int = 0


@dataclass
class BoolNode:
    """Clauses joined by one operator, `and` or `or`."""

    op: str  # "and" | "or"
    children: list[Any]


@dataclass
class Not:
    """A negated clause: matches documents the clause does not."""

    child: Any


_TERM_END = set(' \t\n\r"|+()')


def parse_simple_query(text: str, default_operator: str = "or") -> Any:
    """Parse Lucene's simple query string syntax into a tree, left to right like SimpleQueryParser.

    `+` and, `|` or, `-` not, `"..."` phrase (`~N` slop), `term*` prefix, `term~N` fuzzy, `( )` groups.
    Syntax errors never raise: like Elasticsearch, the parser is lenient.
    """
    pos = 0

    def parse_group(depth: int) -> Any:
        nonlocal pos
        top: Any = None
        current: str | None = None
        previous: str | None = None
        negations = 0

        def add(branch: Any) -> None:
            nonlocal top, current, previous, negations
            if branch is None:
                return
            if negations % 2 == 1:
                branch = Not(branch)
            negations = 0
            if top is None:
                top = branch
            else:
                op = current or default_operator
                if op != previous:
                    top = BoolNode(op, [top])
                top.children.append(branch)
                previous = op
            current = None

        while pos < len(text):
            char = text[pos]
            if char in " \t\n\r":
                pos += 1
            elif char == "(":
                pos += 1
                add(parse_group(depth + 1))
            elif char == ")":
                pos += 1
                if depth > 0:
                    return top
            elif char == "|":
                current = "or"
                pos += 1
            elif char == "+":
                current = "and"
                pos += 1
            elif char == "-":
                negations += 1
                pos += 1
            elif char == '"':
                end = pos + 1
                chars = []
                while end < len(text) and text[end] != '"':
                    if text[end] == "\\" and end + 1 < len(text):
                        end += 1
                    chars.append(text[end])
                    end += 1
                if end >= len(text):  # no closing quote: the text is read as terms
                    pos += 1
                    continue
                pos = end + 1
                add(Phrase("".join(chars), slop=_read_number_after_tilde()))
            else:
                add(_read_term())
        return top

    def _read_number_after_tilde(default: int = 0, fuzzy: bool = False) -> int:
        nonlocal pos
        if pos < len(text) and text[pos] == "~":
            pos += 1
            start = pos
            while pos < len(text) and text[pos].isdigit():
                pos += 1
            return int(text[start:pos]) if pos > start else (2 if fuzzy else default)
        return default

    def _read_term() -> Any:
        nonlocal pos
        chars: list[str] = []
        prefix = False
        fuzzy: int | None = None
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text):
                chars.append(text[pos + 1])
                pos += 2
                continue
            if char in _TERM_END:
                break
            if char == "~":
                fuzzy = _read_number_after_tilde(fuzzy=True)
                break
            if char == "*" and chars and (pos + 1 == len(text) or text[pos + 1] in _TERM_END):
                prefix = True
                pos += 1
                break
            chars.append(char)
            pos += 1
        return Term("".join(chars), prefix=prefix, fuzzy=fuzzy) if chars else None

    return parse_group(0)


def _edit_distance_within(a: str, b: str, limit: int) -> bool:
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


def _phrase_freq(values: list[list[str]], phrase: list[str], slop: int) -> int:
    """How often `phrase` occurs in order, allowing `slop` extra positions in total."""
    hits = 0
    for tokens in values:
        for start, token in enumerate(tokens):
            if token != phrase[0]:
                continue
            pos, gaps = start, 0
            for word in phrase[1:]:
                nxt = pos + 1
                while nxt < len(tokens) and tokens[nxt] != word and gaps + (nxt - pos - 1) < slop:
                    nxt += 1
                if nxt >= len(tokens) or tokens[nxt] != word:
                    break
                gaps += nxt - pos - 1
                pos = nxt
            else:
                hits += 1
    return hits


class TextSearch:
    """Evaluate a parsed simple query string over a set of (text or keyword) fields."""

    def __init__(self, ctx: Scorer, fields: list[tuple[str, str]], default_operator: str):
        self.ctx = ctx
        self.fields = fields
        self.default_operator = default_operator

    def compile(self, node: Any) -> Callable[[Doc], float | None] | None:
        if node is None:
            return None
        if isinstance(node, Not):
            inner = self.compile(node.child)
            if inner is None:
                return None
            return lambda doc: None if inner(doc) is not None else 1.0
        if isinstance(node, BoolNode):
            parts = [p for p in (self.compile(c) for c in node.children) if p is not None]
            if not parts:
                return None
            if node.op == "and":

                def all_of(doc: Doc) -> float | None:
                    total = 0.0
                    for p in parts:
                        s = p(doc)
                        if s is None:
                            return None
                        total += s
                    return total

                return all_of

            def any_of(doc: Doc) -> float | None:
                scores = [s for s in (p(doc) for p in parts) if s is not None]
                return sum(scores) if scores else None

            return any_of
        per_field = [m for m in (self._field_matcher(node, path, ftype) for path, ftype in self.fields) if m]
        if not per_field:
            return None

        def dis_max(doc: Doc) -> float | None:  # tie_breaker 1.0: the matching fields' scores add up
            scores = [s for s in (m(doc) for m in per_field) if s is not None]
            return sum(scores) if scores else None

        return dis_max

    def _field_matcher(self, node: Any, path: str, ftype: str) -> Callable[[Doc], float | None] | None:
        ctx = self.ctx
        if isinstance(node, Term) and (node.prefix or node.fuzzy is not None):
            needle = node.text.lower() if ftype == "text" else node.text
            if node.prefix:

                def test(token: str) -> bool:
                    return token.startswith(needle)
            else:
                limit = min(node.fuzzy or 0, 2)

                def test(token: str) -> bool:
                    return _edit_distance_within(token, needle, limit)

            return lambda doc: 1.0 if any(test(t) for t in doc.text(path, ftype).counts) else None
        if ftype == "keyword":
            value = node.text

            def keyword(doc: Doc) -> float | None:
                tf = doc.text(path, ftype)
                freq = tf.counts.get(value, 0)
                return ctx.bm25(path, ftype, value, freq, tf.length) if freq else None

            return keyword
        tokens = analyze(node.text)
        if not tokens:
            return None
        if isinstance(node, Phrase) and len(tokens) > 1:
            slop = node.slop

            def phrase(doc: Doc) -> float | None:
                tf = doc.text(path, ftype)
                freq = _phrase_freq(tf.values, tokens, slop)
                if not freq:
                    return None
                return sum(ctx.bm25(path, ftype, t, freq, tf.length) for t in tokens)

            return phrase
        operator_and = isinstance(node, Phrase) or self.default_operator == "and"

        def term(doc: Doc) -> float | None:
            tf = doc.text(path, ftype)
            total, hits = 0.0, 0
            for token in tokens:
                freq = tf.counts.get(token, 0)
                if freq:
                    hits += 1
                    total += ctx.bm25(path, ftype, token, freq, tf.length)
                elif operator_and:
                    return None
            return total if hits else None

        return term
