"""Interpret the Elasticsearch query DSL that argilla-server emits, over plain JSON documents.

Why: no Elasticsearch can run on these machines, so `argilla_setup.search.engine` keeps documents in
SQLite and answers the server's requests with this interpreter. It follows Elasticsearch's semantics
where argilla-server relies on them: mapping-typed values (keyword, numeric, date, text), nested
`responses` indexed with `include_in_root`, keyword doc values counted once per document, BM25-scored
`simple_query_string`, missing values sorted last, `random_score` seeded per user. Any construct it
does not implement raises `UnsupportedQueryError`, so a gap is a clear error, never a wrong answer.

The module is pure (no I/O): a `Snapshot` of one index goes in, an Elasticsearch-shaped dict comes out.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import math
import re
import struct
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from argilla_setup.search.text import BoolNode, Term, TextSearch, analyze, parse_simple_query
from loop.errors import NotFoundError, PickloopError

__all__ = [
    "Doc",
    "DocumentNotFoundError",
    "IndexNotFoundError",
    "Mapping",
    "QueryError",
    "Snapshot",
    "UnsupportedQueryError",
    "apply_update",
    "knn_search",
    "search",
    "strip_excluded",
]


class UnsupportedQueryError(PickloopError, NotImplementedError):
    """Raised for a query, sort, aggregation or script construct this interpreter does not implement."""


class QueryError(PickloopError, ValueError):
    """Raised for a query Elasticsearch would reject too (e.g. a non-number compared to a numeric field)."""


class IndexNotFoundError(NotFoundError):
    """Raised when a request names an index that does not exist (Elasticsearch's index_not_found)."""


class DocumentNotFoundError(NotFoundError):
    """Raised when an update names a document the index does not hold (document_missing_exception)."""


# ---------------------------------------------------------------------------------------------------
# Mappings and field values
# ---------------------------------------------------------------------------------------------------

NUMERIC_TYPES = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
)
DATE_TYPES = frozenset({"date", "date_nanos"})
_NARROW_FLOATS = {"float": "<f", "half_float": "<e"}
DISABLED = "_disabled"  # an `enabled: false` object, or anything under one: stored, never indexed
DYNAMIC = "_dynamic"  # unmapped, under a `dynamic: true` object: values are used as they are
OBJECT_TYPES = frozenset({"object", "nested"})


class Mapping:
    """Field types of one index, by full dotted path, built from its `mappings` body."""

    def __init__(self, mappings: dict[str, Any]):
        self.raw = mappings
        self.types: dict[str, str] = {}
        self.specs: dict[str, dict[str, Any]] = {}
        self.dynamic: dict[str, bool] = {"": _is_dynamic(mappings.get("dynamic", True))}
        self._walk(mappings.get("properties", {}), "")
        self._cache: dict[str, str | None] = {}

    def _walk(self, properties: dict[str, Any], prefix: str) -> None:
        for name, spec in properties.items():
            path = prefix + name
            self.specs[path] = spec
            if spec.get("enabled", True) is False:
                self.types[path] = DISABLED
                continue
            self.types[path] = spec.get("type", "object")
            if "dynamic" in spec:
                self.dynamic[path] = _is_dynamic(spec["dynamic"])
            if "properties" in spec:
                self._walk(spec["properties"], path + ".")

    def type_of(self, path: str) -> str | None:
        """The mapped type of `path`; DISABLED, DYNAMIC, or None when Elasticsearch would not index it."""
        if path in self._cache:
            return self._cache[path]
        found = self.types.get(path)
        if found is None:
            parts = path.split(".")
            found = DYNAMIC if self.dynamic[""] else None
            for i in range(len(parts) - 1, 0, -1):
                parent = ".".join(parts[:i])
                parent_type = self.types.get(parent)
                if parent_type == DISABLED:
                    found = DISABLED
                    break
                if parent in self.dynamic:
                    found = DYNAMIC if self.dynamic[parent] else None
                    break
        self._cache[path] = found
        return found

    def leaf_paths(self) -> list[str]:
        """Every mapped path that holds values (not objects), in mapping order."""
        return [p for p, t in self.types.items() if t not in OBJECT_TYPES and t != DISABLED]


def _is_dynamic(value: Any) -> bool:
    return value is True or value == "true"


def _collect(obj: Any, parts: list[str], i: int, out: list[Any]) -> None:
    """Append every value found at `parts[i:]` under `obj`, flattening arrays like Elasticsearch does."""
    if isinstance(obj, list):
        for item in obj:
            _collect(item, parts, i, out)
        return
    if i == len(parts):
        if obj is not None:
            out.append(obj)
        return
    if isinstance(obj, dict):
        if parts[i] in obj:
            _collect(obj[parts[i]], parts, i + 1, out)
        for j in range(i + 2, len(parts) + 1):  # source keys that contain dots themselves
            dotted = ".".join(parts[i:j])
            if dotted in obj:
                _collect(obj[dotted], parts, j, out)


def raw_values(obj: dict[str, Any], prefix: str, path: str) -> list[Any]:
    """Values of full path `path` in `obj`, an object whose own path is `prefix` ("" for the root)."""
    if prefix:
        if not path.startswith(prefix):
            return []
        path = path[len(prefix) :]
    out: list[Any] = []
    _collect(obj, path.split("."), 0, out)
    return out


def _has_leaf(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_leaf(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_leaf(v) for v in value)
    return value is not None


def parse_date(value: Any) -> float:
    """Milliseconds since the epoch, as Elasticsearch compares dates (naive times are UTC)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        return float(value)
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp() * 1000.0


def coerce(field_type: str | None, value: Any) -> Any:
    """`value` as the field type indexes it, or None when it would not be indexed."""
    if value is None or isinstance(value, dict | list):
        return None
    try:
        if field_type == "keyword":
            if isinstance(value, bool):
                return "true" if value else "false"
            return value if isinstance(value, str) else str(value)
        if field_type in NUMERIC_TYPES:
            if isinstance(value, bool):
                return None
            if field_type in _NARROW_FLOATS:  # doc values keep these widths, as Elasticsearch's do
                return struct.unpack(
                    _NARROW_FLOATS[field_type], struct.pack(_NARROW_FLOATS[field_type], float(value))
                )[0]
            return float(value)
        if field_type in DATE_TYPES:
            return parse_date(value)
        if field_type == "boolean":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if field_type == "text":  # a term compared with a text field's tokens, unanalysed
            return value if isinstance(value, str) else str(value)
        if field_type == DYNAMIC:
            return value
    except (TypeError, ValueError):
        return None
    return None


def coerce_query_value(field_type: str | None, value: Any, field_name: str) -> Any:
    """A query's value as the field type compares it; a value the type cannot take is a QueryError."""
    if field_type in (None, DISABLED):
        return value
    result = coerce(field_type, value)
    if result is None:
        raise QueryError(f"cannot compare {value!r} with field {field_name!r} of type {field_type}")
    return result


# ---------------------------------------------------------------------------------------------------
# Documents, snapshots and text analysis
# ---------------------------------------------------------------------------------------------------


@dataclass
class TextField:
    """One document's analysed text field: tokens per value (phrases never span values)."""

    values: list[list[str]]
    counts: Counter[str]
    length: int


@dataclass
class Doc:
    """A stored document: its id, insertion order (ties break on it, like Lucene's doc ids), source."""

    id: str
    seq: int
    source: dict[str, Any]
    _text: dict[str, TextField] = field(default_factory=dict, repr=False)
    _values: dict[Any, list[Any]] = field(default_factory=dict, repr=False)
    _vectors: dict[str, Any] = field(default_factory=dict, repr=False)

    def text(self, path: str, field_type: str) -> TextField:
        """The analysed values of a text or keyword field, cached for the life of this document."""
        cached = self._text.get(path)
        if cached is None:
            raw = [v for v in raw_values(self.source, "", path) if not isinstance(v, dict | list)]
            if field_type == "text":
                values = [analyze(str(v)) for v in raw]
            else:
                values = [[coerce(field_type, v)] for v in raw]
            tokens = [t for v in values for t in v if t is not None]
            cached = TextField(values=values, counts=Counter(tokens), length=len(tokens))
            self._text[path] = cached
        return cached


Hit = tuple[Doc, float]


@dataclass
class Snapshot:
    """A consistent, read-only view of one index: its mapping and documents in insertion order."""

    name: str
    mapping: Mapping
    docs: list[Doc]
    # Ordered hits of recent (query, sort) requests: paging through one search sorts once.
    results: OrderedDict[str, tuple[list[Hit], bool]] = field(default_factory=OrderedDict, repr=False)
    # Per keyword field: value -> documents holding it (`term_counts`), counted once per snapshot.
    counts: dict[str, Counter[Any]] = field(default_factory=dict, repr=False)


def term_counts(snapshot: Snapshot, path: str) -> Counter[Any]:
    """How many documents hold each value of the top-level keyword field `path` (a document with a
    list counts once per distinct value), remembered on the snapshot until the index changes."""
    counted = snapshot.counts.get(path)
    if counted is None:
        counted = Counter()
        for doc in snapshot.docs:
            value = doc.source.get(path)
            if isinstance(value, list):
                counted.update(set(v for v in value if v is not None))
            elif value is not None:
                counted[value] += 1
        snapshot.counts[path] = counted
    return counted


# ---------------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------------

Matcher = Callable[[Doc, dict, str], float | None]
"""(root document, current object, current object's path prefix) -> score, or None for no match."""

_NO_MATCH: Matcher = lambda doc, obj, prefix: None  # noqa: E731


@dataclass
class _Context:
    snapshot: Snapshot
    _field_stats: dict[str, tuple[int, float]] = field(default_factory=dict)
    _df: dict[tuple[str, str], int] = field(default_factory=dict)
    _idf: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def mapping(self) -> Mapping:
        return self.snapshot.mapping

    def field_stats(self, path: str, field_type: str) -> tuple[int, float]:
        """(documents with the field, average field length), for BM25."""
        if path not in self._field_stats:
            lengths = [d.text(path, field_type).length for d in self.snapshot.docs]
            present = [n for n in lengths if n]
            avg = sum(present) / len(present) if present else 1.0
            self._field_stats[path] = (len(present), avg)
        return self._field_stats[path]

    def doc_freq(self, path: str, field_type: str, term: str) -> int:
        key = (path, term)
        if key not in self._df:
            self._df[key] = sum(1 for d in self.snapshot.docs if term in d.text(path, field_type).counts)
        return self._df[key]

    def bm25(self, path: str, field_type: str, term: str, freq: int, length: int) -> float:
        """Lucene 9's BM25 (k1=1.2, b=0.75); keyword fields have no norms."""
        idf = self._idf.get((path, term))
        if idf is None:
            count, _ = self.field_stats(path, field_type)
            df = self.doc_freq(path, field_type, term)
            idf = self._idf[(path, term)] = math.log(1 + (count - df + 0.5) / (df + 0.5))
        if field_type != "text":
            return idf * freq / (freq + 1.2)
        avg = self._field_stats[path][1]
        return idf * freq / (freq + 1.2 * (0.25 + 0.75 * length / avg))


def _single(body: dict[str, Any], what: str) -> tuple[str, Any]:
    keys = [k for k in body if k not in ("boost", "_name")]
    if len(keys) != 1:
        raise UnsupportedQueryError(f"{what} query needs exactly one field, got {keys}")
    return keys[0], body[keys[0]]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def compile_query(query: dict[str, Any] | None, ctx: _Context) -> Matcher:
    """Turn one query clause into a matcher function."""
    if query is None:
        query = {"match_all": {}}
    if not isinstance(query, dict) or len(query) != 1:
        raise UnsupportedQueryError(f"a query must be an object with exactly one key, got {query!r}")
    ((kind, body),) = query.items()
    compiler = _COMPILERS.get(kind)
    if compiler is None:
        raise UnsupportedQueryError(
            f"query type {kind!r} is not supported by the pickloop-sqlite search engine"
        )
    return compiler(body or {}, ctx)


def _compile_match_all(body: dict[str, Any], ctx: _Context) -> Matcher:
    boost = float(body.get("boost", 1.0))
    return lambda doc, obj, prefix: boost


def _compile_match_none(body: dict[str, Any], ctx: _Context) -> Matcher:
    return _NO_MATCH


Getter = Callable[[Doc, dict, str], list[Any]]
"""(root document, current object, its path prefix) -> the field's indexed values there."""


def _values_getter(ctx: _Context, path: str) -> tuple[str | None, Getter]:
    """The field's type and a function giving its indexed values; root values are cached per document."""
    field_type = ctx.mapping.type_of(path)
    if field_type in (None, DISABLED) or field_type in OBJECT_TYPES:
        return field_type, lambda doc, obj, prefix: []
    cache_key = f"{field_type}:{path}"

    def compute(obj: dict, prefix: str) -> list[Any]:
        raw = raw_values(obj, prefix, path)
        if field_type == "text":
            return [t for v in raw if isinstance(v, str) for t in analyze(v)]
        return [c for c in (coerce(field_type, v) for v in raw) if c is not None]

    def values(doc: Doc, obj: dict, prefix: str) -> list[Any]:
        # A document's source never changes (an update makes a new Doc), so neither do its values;
        # nested objects are told apart by identity, stable while the document holds them.
        key = (id(obj), cache_key) if prefix else cache_key
        cached = doc._values.get(key)
        if cached is None:
            cached = doc._values[key] = compute(obj, prefix)
        return cached

    return field_type, values


def _compile_term(body: dict[str, Any], ctx: _Context) -> Matcher:
    path, spec = _single(body, "term")
    boost = float(body.get("boost", 1.0))
    if isinstance(spec, dict):
        boost = float(spec.get("boost", boost))
        if spec.get("case_insensitive"):
            raise UnsupportedQueryError("term query with case_insensitive is not supported")
        spec = spec.get("value")
    return _terms_matcher(ctx, path, [spec], boost)


def _compile_terms(body: dict[str, Any], ctx: _Context) -> Matcher:
    path, values = _single(body, "terms")
    if not isinstance(values, list):
        raise UnsupportedQueryError(f"terms lookup for {path!r} is not supported; give a list of values")
    return _terms_matcher(ctx, path, values, float(body.get("boost", 1.0)))


def _terms_matcher(ctx: _Context, path: str, values: list[Any], boost: float) -> Matcher:
    field_type, getter = _values_getter(ctx, path)
    wanted = {coerce_query_value(field_type, v, path) for v in values}
    if field_type == DYNAMIC:
        wanted |= {str(v) for v in values}

    def match(doc: Doc, obj: dict, prefix: str) -> float | None:
        for v in getter(doc, obj, prefix):
            if v in wanted or (field_type == DYNAMIC and str(v) in wanted):
                return boost
        return None

    return match


def _compile_range(body: dict[str, Any], ctx: _Context) -> Matcher:
    path, spec = _single(body, "range")
    unknown = set(spec) - {"gte", "gt", "lte", "lt", "boost", "format"}
    if unknown or "format" in spec:
        raise UnsupportedQueryError(
            f"range options {sorted(unknown | ({'format'} & set(spec)))} are not supported"
        )
    field_type, getter = _values_getter(ctx, path)
    if field_type == "text":
        raise UnsupportedQueryError(f"range over text field {path!r} is not supported")
    bounds = {
        op: coerce_query_value(field_type, spec[op], path) for op in ("gte", "gt", "lte", "lt") if op in spec
    }
    boost = float(spec.get("boost", 1.0))

    def within(v: Any) -> bool:
        try:
            if "gte" in bounds and not v >= bounds["gte"]:
                return False
            if "gt" in bounds and not v > bounds["gt"]:
                return False
            if "lte" in bounds and not v <= bounds["lte"]:
                return False
            return not ("lt" in bounds and not v < bounds["lt"])
        except TypeError:  # only possible for unmapped dynamic values of mixed types
            return False

    def match(doc: Doc, obj: dict, prefix: str) -> float | None:
        return boost if any(within(v) for v in getter(doc, obj, prefix)) else None

    return match


def _compile_exists(body: dict[str, Any], ctx: _Context) -> Matcher:
    path = body.get("field")
    if not isinstance(path, str) or any(c in path for c in "*?"):
        raise UnsupportedQueryError(f"exists needs one concrete field name, got {path!r}")
    field_type = ctx.mapping.type_of(path)
    boost = float(body.get("boost", 1.0))
    if field_type in (None, DISABLED):
        return _NO_MATCH
    if field_type in OBJECT_TYPES:
        return lambda doc, obj, prefix: (
            boost if any(_has_leaf(v) for v in raw_values(obj, prefix, path)) else None
        )
    _, getter = _values_getter(ctx, path)
    return lambda doc, obj, prefix: boost if getter(doc, obj, prefix) else None


def _compile_ids(body: dict[str, Any], ctx: _Context) -> Matcher:
    wanted = {str(v) for v in _as_list(body.get("values"))}
    boost = float(body.get("boost", 1.0))
    return lambda doc, obj, prefix: boost if not prefix and doc.id in wanted else None


def _minimum_should_match(value: Any, n_should: int) -> int:
    text = str(value).strip()
    if text.endswith("%"):
        pct = float(text[:-1])
        count = math.floor(n_should * abs(pct) / 100)
        return count if pct >= 0 else n_should - count
    number = int(text)
    return number if number >= 0 else max(n_should + number, 0)


def _compile_bool(body: dict[str, Any], ctx: _Context) -> Matcher:
    unknown = set(body) - {"must", "filter", "should", "must_not", "minimum_should_match", "boost", "_name"}
    if unknown:
        raise UnsupportedQueryError(f"bool options {sorted(unknown)} are not supported")
    must = [compile_query(q, ctx) for q in _as_list(body.get("must"))]
    filters = [compile_query(q, ctx) for q in _as_list(body.get("filter"))]
    should = [compile_query(q, ctx) for q in _as_list(body.get("should"))]
    must_not = [compile_query(q, ctx) for q in _as_list(body.get("must_not"))]
    boost = float(body.get("boost", 1.0))
    if "minimum_should_match" in body:
        msm = _minimum_should_match(body["minimum_should_match"], len(should))
    else:
        msm = 1 if should and not must and not filters else 0
    empty = not (must or filters or should or must_not)

    def match(doc: Doc, obj: dict, prefix: str) -> float | None:
        score = 0.0
        for m in must:
            s = m(doc, obj, prefix)
            if s is None:
                return None
            score += s
        for f in filters:
            if f(doc, obj, prefix) is None:
                return None
        for n in must_not:
            if n(doc, obj, prefix) is not None:
                return None
        if should:
            hits = 0
            for m in should:
                s = m(doc, obj, prefix)
                if s is not None:
                    hits += 1
                    score += s
            if hits < msm:
                return None
        return boost if empty else score * boost

    return match


def nested_objects(doc: Doc, obj: dict, prefix: str, path: str) -> list[dict]:
    """The objects under nested `path` in `obj` (cached per document, whose source never changes)."""
    key = (id(obj), "nested:" + path)
    found = doc._values.get(key)
    if found is None:
        found = doc._values[key] = [c for c in raw_values(obj, prefix, path) if isinstance(c, dict)]
    return found


def _compile_nested(body: dict[str, Any], ctx: _Context) -> Matcher:
    unknown = set(body) - {"path", "query", "score_mode", "ignore_unmapped", "boost", "_name"}
    if unknown:
        raise UnsupportedQueryError(f"nested options {sorted(unknown)} are not supported")
    path = body["path"]
    if ctx.mapping.type_of(path) != "nested" and not body.get("ignore_unmapped"):
        raise QueryError(f"[nested] failed to find nested object under path [{path}]")
    inner = compile_query(body.get("query"), ctx)
    mode = body.get("score_mode", "avg")
    if mode not in ("avg", "max", "min", "sum", "none"):
        raise UnsupportedQueryError(f"nested score_mode {mode!r} is not supported")
    child_prefix = path + "."
    boost = float(body.get("boost", 1.0))

    def match(doc: Doc, obj: dict, prefix: str) -> float | None:
        scores = []
        for child in nested_objects(doc, obj, prefix, path):
            s = inner(doc, child, child_prefix)
            if s is not None:
                scores.append(s)
        if not scores:
            return None
        if mode == "none":
            return 0.0
        agg = {"avg": lambda x: sum(x) / len(x), "max": max, "min": min, "sum": sum}[mode]
        return agg(scores) * boost

    return match


def _compile_constant_score(body: dict[str, Any], ctx: _Context) -> Matcher:
    inner = compile_query(body.get("filter"), ctx)
    boost = float(body.get("boost", 1.0))
    return lambda doc, obj, prefix: boost if inner(doc, obj, prefix) is not None else None


def random_score(seed: Any, doc_id: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for (seed, document): a per-user stable shuffle.

    Elasticsearch hashes `_seq_no`, which changes on every update; hashing the document id keeps a
    labeler's order stable while records receive responses.
    """
    digest = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _compile_function_score(body: dict[str, Any], ctx: _Context) -> Matcher:
    unknown = set(body) - {
        "query",
        "functions",
        "random_score",
        "weight",
        "score_mode",
        "boost_mode",
        "boost",
    }
    if unknown:
        raise UnsupportedQueryError(f"function_score options {sorted(unknown)} are not supported")
    inner = compile_query(body.get("query"), ctx)
    specs = list(body.get("functions") or [])
    if "random_score" in body or "weight" in body:
        specs.append({k: body[k] for k in ("random_score", "weight") if k in body})
    functions: list[tuple[Matcher | None, Callable[[Doc], float]]] = []
    for spec in specs:
        kinds = set(spec) - {"filter", "weight"}
        if kinds - {"random_score"}:
            raise UnsupportedQueryError(
                f"score functions {sorted(kinds)} are not supported (only random_score)"
            )
        weight = float(spec.get("weight", 1.0))
        flt = compile_query(spec["filter"], ctx) if "filter" in spec else None
        if "random_score" in spec:
            seed = (spec["random_score"] or {}).get("seed", "")
            functions.append((flt, lambda doc, seed=seed, w=weight: w * random_score(seed, doc.id)))
        else:
            functions.append((flt, lambda doc, w=weight: w))
    score_mode = body.get("score_mode", "multiply")
    boost_mode = body.get("boost_mode", "multiply")
    combine = {
        "multiply": math.prod,
        "sum": sum,
        "avg": lambda xs: sum(xs) / len(xs),
        "max": max,
        "min": min,
        "first": lambda xs: xs[0],
    }
    if score_mode not in combine or boost_mode not in ("multiply", "replace", "sum", "avg", "max", "min"):
        raise UnsupportedQueryError(f"function_score modes {score_mode!r}/{boost_mode!r} are not supported")
    boost = float(body.get("boost", 1.0))

    def match(doc: Doc, obj: dict, prefix: str) -> float | None:
        query_score = inner(doc, obj, prefix)
        if query_score is None:
            return None
        values = [fn(doc) for flt, fn in functions if flt is None or flt(doc, obj, prefix) is not None]
        if not values:
            return query_score * boost
        fscore = combine[score_mode](values)
        if boost_mode == "replace":
            total = fscore
        elif boost_mode == "multiply":
            total = query_score * fscore
        else:
            total = combine[boost_mode]([query_score, fscore])
        return total * boost

    return match


# --- full text (parsing and scoring live in argilla_setup.search.text) ---------------------------


def _text_fields(ctx: _Context, patterns: list[str]) -> list[tuple[str, str]]:
    fields = []
    for pattern in patterns:
        pattern = pattern.split("^", 1)[0]
        for path in ctx.mapping.leaf_paths():
            ftype = ctx.mapping.types[path]
            if (
                ftype in ("text", "keyword")
                and fnmatch.fnmatchcase(path, pattern)
                and (path, ftype) not in fields
            ):
                fields.append((path, ftype))
    return fields


_SQS_IGNORED = {
    "analyze_wildcard",
    "auto_generate_synonyms_phrase_query",
    "fuzzy_max_expansions",
    "fuzzy_transpositions",
    "fuzzy_prefix_length",
    "lenient",
    "boost",
    "_name",
}


def _compile_simple_query_string(body: dict[str, Any], ctx: _Context) -> Matcher:
    unknown = set(body) - _SQS_IGNORED - {"query", "fields", "default_operator", "flags"}
    if unknown or body.get("flags", "ALL") != "ALL":
        raise UnsupportedQueryError(
            f"simple_query_string options {sorted(unknown) or ['flags']} are not supported"
        )
    operator = str(body.get("default_operator", "OR")).lower()
    fields = _text_fields(ctx, _as_list(body.get("fields")) or ["*"])
    tree = parse_simple_query(str(body.get("query", "")), operator)
    evaluate = TextSearch(ctx, fields, operator).compile(tree)
    if evaluate is None:
        return _NO_MATCH
    boost = float(body.get("boost", 1.0))

    def match(doc: Doc, obj: dict, prefix: str) -> float | None:
        if prefix:
            return None
        s = evaluate(doc)
        return None if s is None else s * boost

    return match


def _compile_match(body: dict[str, Any], ctx: _Context) -> Matcher:
    path, spec = _single(body, "match")
    if not isinstance(spec, dict):
        spec = {"query": spec}
    unknown = set(spec) - {"query", "operator", "boost"}
    if unknown:
        raise UnsupportedQueryError(f"match options {sorted(unknown)} are not supported")
    field_type = ctx.mapping.type_of(path)
    if field_type not in ("text", "keyword"):
        return _terms_matcher(ctx, path, [spec["query"]], float(spec.get("boost", 1.0)))
    operator = str(spec.get("operator", "or")).lower()
    tokens = analyze(str(spec["query"])) if field_type == "text" else [str(spec["query"])]
    tree = BoolNode(operator, [Term(t) for t in tokens]) if tokens else None
    evaluate = TextSearch(ctx, [(path, field_type)], operator).compile(tree)
    if evaluate is None:
        return _NO_MATCH
    return lambda doc, obj, prefix: None if prefix else evaluate(doc)


_COMPILERS: dict[str, Callable[[dict[str, Any], _Context], Matcher]] = {
    "match_all": _compile_match_all,
    "match_none": _compile_match_none,
    "term": _compile_term,
    "terms": _compile_terms,
    "range": _compile_range,
    "exists": _compile_exists,
    "ids": _compile_ids,
    "bool": _compile_bool,
    "nested": _compile_nested,
    "constant_score": _compile_constant_score,
    "function_score": _compile_function_score,
    "simple_query_string": _compile_simple_query_string,
    "match": _compile_match,
}


# ---------------------------------------------------------------------------------------------------
# Sorting
# ---------------------------------------------------------------------------------------------------


def _sort_entries(sort: Any) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    for item in _as_list(sort):
        if isinstance(item, str):
            entries.append((item, {}))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise UnsupportedQueryError(f"sort entry {item!r} is not supported")
        ((name, spec),) = item.items()
        entries.append((name, spec if isinstance(spec, dict) else {"order": spec}))
    return entries


def _sort_key(ctx: _Context, path: str, spec: dict[str, Any], descending: bool) -> Callable[[Doc], Any]:
    unknown = set(spec) - {"order", "mode", "missing", "nested", "unmapped_type"}
    if unknown:
        raise UnsupportedQueryError(f"sort options {sorted(unknown)} are not supported")
    field_type, getter = _values_getter(ctx, path)
    if field_type == "text":
        raise QueryError(f"cannot sort on text field {path!r} (Elasticsearch has no fielddata for it)")
    numeric = field_type in NUMERIC_TYPES or field_type in DATE_TYPES
    mode = spec.get("mode") or ("max" if descending else "min")
    if mode not in ("min", "max", "avg", "sum", "median"):
        raise UnsupportedQueryError(f"sort mode {mode!r} is not supported")
    if not numeric and mode not in ("min", "max"):
        mode = "max" if descending else "min"
    nested = spec.get("nested")
    nested_filter = None
    if nested:
        if set(nested) - {"path", "filter"}:
            raise UnsupportedQueryError(f"nested sort options {sorted(set(nested))} are not supported")
        nested_path = nested["path"]
        nested_prefix = nested_path + "."
        if "filter" in nested:
            nested_filter = compile_query(nested["filter"], ctx)

    def values(doc: Doc) -> list[Any]:
        if not nested:
            return getter(doc, doc.source, "")
        out = []
        for child in nested_objects(doc, doc.source, "", nested_path):
            if nested_filter is None or nested_filter(doc, child, nested_prefix) is not None:
                out.extend(getter(doc, child, nested_prefix))
        return out

    def reduce(vals: list[Any]) -> Any:
        if mode == "min":
            return min(vals)
        if mode == "max":
            return max(vals)
        if mode == "sum":
            return sum(vals)
        if mode == "avg":
            return sum(vals) / len(vals)
        ordered = sorted(vals)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    return lambda doc: (lambda vals: reduce(vals) if vals else None)(values(doc))


def sort_hits(ctx: _Context, hits: list[Hit], sort: Any) -> tuple[list[Hit], bool]:
    """Hits in the requested order (stable: ties keep insertion order); also whether scores are kept."""
    entries = _sort_entries(sort)
    keep_scores = False
    ordered = list(hits)
    for name, spec in reversed(entries):
        if name == "_doc":
            continue
        if name == "_score":
            keep_scores = True
            descending = spec.get("order", "desc") == "desc"
            ordered.sort(key=lambda hit: hit[1], reverse=descending)
            continue
        descending = str(spec.get("order", "asc")) == "desc"
        missing = spec.get("missing", "_last")
        key = (lambda doc: doc.id) if name == "_id" else _sort_key(ctx, name, spec, descending)
        keyed = [(key(hit[0]), hit) for hit in ordered]
        if missing not in ("_last", "_first"):
            field_type = ctx.mapping.type_of(name)
            fill = coerce_query_value(field_type, missing, name)
            keyed = [(fill if k is None else k, hit) for k, hit in keyed]
        present = [(k, hit) for k, hit in keyed if k is not None]
        absent = [hit for k, hit in keyed if k is None]
        present.sort(key=lambda pair: pair[0], reverse=descending)
        values = [hit for _, hit in present]
        ordered = absent + values if missing == "_first" else values + absent
    return ordered, keep_scores


# ---------------------------------------------------------------------------------------------------
# Aggregations
# ---------------------------------------------------------------------------------------------------

Item = tuple[Doc, dict, str]


def _agg_values(ctx: _Context, items: Iterable[Item], path: str) -> tuple[str | None, list[list[Any]]]:
    """Per item, its values of `path`; keyword values count once per document (doc values are a set)."""
    field_type, getter = _values_getter(ctx, path)
    if field_type == "text":
        raise QueryError(f"cannot aggregate on text field {path!r} (Elasticsearch has no fielddata for it)")
    per_item = []
    for doc, obj, prefix in items:
        vals = getter(doc, obj, prefix)
        if field_type in ("keyword", "boolean", DYNAMIC):
            vals = list(dict.fromkeys(vals))
        per_item.append(vals)
    return field_type, per_item


def _bucket_key(field_type: str | None, value: Any) -> Any:
    if field_type in ("long", "integer", "short", "byte") or field_type in DATE_TYPES:
        return int(value)
    if field_type == "boolean":
        return 1 if value else 0
    return value


def run_aggregations(ctx: _Context, aggs: dict[str, Any], items: list[Item]) -> dict[str, Any]:
    """Evaluate `aggs` (name -> spec) over matched items; Elasticsearch's response shape."""
    return {name: _run_aggregation(ctx, spec, items) for name, spec in aggs.items()}


def _run_aggregation(ctx: _Context, spec: dict[str, Any], items: list[Item]) -> dict[str, Any]:
    sub = spec.get("aggs") or spec.get("aggregations") or {}
    kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
    if len(kinds) != 1:
        raise UnsupportedQueryError(f"an aggregation needs exactly one type, got {kinds}")
    kind, body = kinds[0], spec[kinds[0]]

    if kind == "filter":
        matcher = compile_query(body, ctx)
        selected = [it for it in items if matcher(*it) is not None]
        return {"doc_count": len(selected), **run_aggregations(ctx, sub, selected)}
    if kind == "nested":
        path = body["path"]
        prefix = path + "."
        children = [
            (doc, child, prefix) for doc, obj, pfx in items for child in nested_objects(doc, obj, pfx, path)
        ]
        return {"doc_count": len(children), **run_aggregations(ctx, sub, children)}
    if kind == "terms":
        return _terms_aggregation(ctx, body, sub, items)

    if sub:
        raise UnsupportedQueryError(f"sub-aggregations under {kind!r} are not supported")
    if set(body) - {"field"}:
        raise UnsupportedQueryError(
            f"{kind} aggregation options {sorted(set(body) - {'field'})} are not supported"
        )
    field_type, per_item = _agg_values(ctx, items, body["field"])
    flat = [v for vals in per_item for v in vals]
    if kind == "value_count":
        return {"value": len(flat)}
    if kind == "cardinality":
        return {"value": len(set(flat))}
    if kind in ("stats", "min", "max", "avg", "sum"):
        if field_type is None:  # unmapped: Elasticsearch answers with empty stats
            flat = []
        elif field_type not in NUMERIC_TYPES and field_type not in DATE_TYPES and field_type != DYNAMIC:
            raise QueryError(f"{kind} aggregation needs a numeric field, {body['field']!r} is {field_type}")
        numbers = [float(v) for v in flat]
        stats = {
            "count": len(numbers),
            "min": min(numbers) if numbers else None,
            "max": max(numbers) if numbers else None,
            "avg": sum(numbers) / len(numbers) if numbers else None,
            "sum": float(sum(numbers)),
        }
        return stats if kind == "stats" else {"value": stats[kind]}
    raise UnsupportedQueryError(
        f"aggregation type {kind!r} is not supported by the pickloop-sqlite search engine"
    )


def _terms_aggregation(ctx: _Context, body: dict[str, Any], sub: dict[str, Any], items: list[Item]) -> dict:
    unknown = set(body) - {"field", "size", "order", "min_doc_count", "shard_size"}
    if unknown:
        raise UnsupportedQueryError(f"terms aggregation options {sorted(unknown)} are not supported")
    field_type, per_item = _agg_values(ctx, items, body["field"])
    members: dict[Any, list[Item]] = {}
    for item, vals in zip(items, per_item, strict=True):
        for v in dict.fromkeys(vals):
            members.setdefault(v, []).append(item)
    order = body.get("order", {"_count": "desc"})
    keys = sorted(members)  # ties on count break on the key, ascending, like Elasticsearch
    for entry in reversed(order if isinstance(order, list) else [order]):
        ((what, direction),) = entry.items()
        if what == "_count":
            keys.sort(key=lambda k: len(members[k]), reverse=direction == "desc")
        elif what in ("_key", "_term"):
            keys.sort(reverse=direction == "desc")
        else:
            raise UnsupportedQueryError(f"terms aggregation order {entry!r} is not supported")
    keys = [k for k in keys if len(members[k]) >= int(body.get("min_doc_count", 1))]
    size = int(body.get("size", 10))
    buckets = []
    for k in keys[:size]:
        bucket: dict[str, Any] = {"key": _bucket_key(field_type, k), "doc_count": len(members[k])}
        if field_type in DATE_TYPES:
            bucket["key_as_string"] = dt.datetime.fromtimestamp(k / 1000, dt.UTC).isoformat()
        bucket.update(run_aggregations(ctx, sub, members[k]))
        buckets.append(bucket)
    other = sum(len(members[k]) for k in keys[size:])
    return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": other, "buckets": buckets}


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


RESULT_CACHE_SIZE = 16
_RESULTS_LOCK = threading.Lock()


def _ordered_hits(ctx: _Context, query: dict[str, Any] | None, sort: Any) -> tuple[list[Hit], bool]:
    """Every hit in order, and whether scores are kept; remembered per snapshot for the next page."""
    snapshot = ctx.snapshot
    key = json.dumps([query, sort], sort_keys=True, default=str)
    with _RESULTS_LOCK:
        cached = snapshot.results.get(key)
        if cached is not None:
            snapshot.results.move_to_end(key)
            return cached
    matcher = compile_query(query, ctx)
    hits: list[Hit] = []
    for doc in snapshot.docs:
        score = matcher(doc, doc.source, "")
        if score is not None:
            hits.append((doc, score))
    if sort:
        result = sort_hits(ctx, hits, sort)
    else:
        result = (sorted(hits, key=lambda hit: hit[1], reverse=True), True)
    with _RESULTS_LOCK:
        snapshot.results[key] = result
        while len(snapshot.results) > RESULT_CACHE_SIZE:
            snapshot.results.popitem(last=False)
    return result


def search(
    snapshot: Snapshot,
    query: dict[str, Any] | None = None,
    size: int | None = None,
    from_: int | None = None,
    sort: Any = None,
    aggregations: dict[str, Any] | None = None,
    source: bool = False,
) -> dict[str, Any]:
    """One `_search` request: total hits, the requested page of (id, score), aggregations.

    argilla-server always asks for `_source: false`; `source=True` adds each hit's `_source`, less the
    mapping's `_source.excludes`, as Elasticsearch returns it."""
    ctx = _Context(snapshot)
    ordered, keep_scores = _ordered_hits(ctx, query, sort)
    hits = ordered
    start = from_ or 0
    page = ordered[start : start + (10 if size is None else size)]
    response: dict[str, Any] = {
        "took": 0,
        "timed_out": False,
        "hits": {
            "total": {"value": len(hits), "relation": "eq"},
            "max_score": max((s for _, s in hits), default=None) if keep_scores else None,
            "hits": [
                {"_index": snapshot.name, "_id": doc.id, "_score": score if keep_scores else None}
                | ({"_source": _source_of(doc, snapshot.mapping)} if source else {})
                for doc, score in page
            ],
        },
    }
    if aggregations:
        response["aggregations"] = run_aggregations(ctx, aggregations, [(d, d.source, "") for d, _ in hits])
    return response


def _source_of(doc: Doc, mapping: Mapping) -> dict[str, Any]:
    return strip_excluded(doc.source, (mapping.raw.get("_source") or {}).get("excludes") or [])


def strip_excluded(source: dict[str, Any], excludes: list[str]) -> dict[str, Any]:
    """`source` without the paths `_source.excludes` names (wildcards in the last part), a copy."""
    if not excludes:
        return source
    source = json.loads(json.dumps(source))
    for pattern in excludes:
        *parents, last = pattern.split(".")
        obj = source
        for part in parents:
            obj = obj.get(part) if isinstance(obj, dict) else None
        if isinstance(obj, dict):
            for key in [k for k in obj if fnmatch.fnmatchcase(k, last)]:
                del obj[key]
    return source


def expand_dotted(properties: dict[str, Any]) -> dict[str, Any]:
    """Mapping `properties` with dotted names (`"metadata.k": {...}`) expanded into objects, as
    Elasticsearch stores them (argilla-server sends metadata and vector mappings that way)."""
    out: dict[str, Any] = {}
    for name, spec in properties.items():
        if isinstance(spec, dict) and "properties" in spec:
            spec = {**spec, "properties": expand_dotted(spec["properties"])}
        head, _, rest = name.partition(".")
        if rest:
            spec = {"properties": expand_dotted({rest: spec})}
        if head in out and isinstance(out[head], dict) and isinstance(spec, dict):
            deep_merge(out[head], spec)
        else:
            out[head] = spec
    return out


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def dynamic_properties(mapping: Mapping, source: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The mappings Elasticsearch's dynamic mapping adds for `source`'s unmapped fields under
    `dynamic: true` objects (strings: date or text with a `keyword` subfield; long; float; boolean)."""
    added: dict[str, Any] = {}
    for key, value in source.items():
        path = prefix + key
        if isinstance(value, list):
            value = next((v for v in value if v is not None), None)
        if value is None:
            continue
        known = mapping.type_of(path)
        if isinstance(value, dict):
            if known == DYNAMIC or known in OBJECT_TYPES:
                inner = dynamic_properties(mapping, value, path + ".")
                if inner or known == DYNAMIC:
                    added[key] = {"properties": inner} if inner else {"type": "object"}
            continue
        if known != DYNAMIC:
            continue
        if isinstance(value, bool):
            added[key] = {"type": "boolean"}
        elif isinstance(value, int):
            added[key] = {"type": "long"}
        elif isinstance(value, float):
            added[key] = {"type": "float"}
        elif isinstance(value, str) and _DATE_RE.match(value):
            added[key] = {"type": "date"}
        else:
            added[key] = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    return added


def normalized_mappings(mappings: dict[str, Any]) -> dict[str, Any]:
    """`mappings` as Elasticsearch reports them: `dynamic` as a string, no empty `_source.excludes`,
    no `type: object` beside `properties`."""
    out: dict[str, Any] = {}
    for key, value in mappings.items():
        if key == "dynamic" and isinstance(value, bool):
            value = "true" if value else "false"
        elif key == "_source" and isinstance(value, dict) and not value.get("excludes"):
            value = {k: v for k, v in value.items() if k != "excludes"}
            if not value:
                continue
        elif key == "properties":
            value = {name: normalized_mappings(spec) for name, spec in value.items()}
        out[key] = value
    if "properties" in out and out.get("type") == "object":
        del out["type"]
    return out


_SIMILARITIES = {
    # Elasticsearch's dense_vector scores, so `threshold` means the same as on a real deployment.
    "cosine": lambda dot, qn, dn: (1 + dot / (qn * dn)) / 2 if qn and dn else None,
    "dot_product": lambda dot, qn, dn: (1 + dot) / 2,
    "max_inner_product": lambda dot, qn, dn: 1 / (1 - dot) if dot < 0 else dot + 1,
}


def knn_search(
    snapshot: Snapshot,
    field_path: str,
    vector: list[float],
    k: int,
    filter_query: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Exact (brute-force) kNN over one dense_vector field, scored like Elasticsearch."""
    import numpy as np

    spec_type = snapshot.mapping.type_of(field_path)
    if spec_type != "dense_vector":
        raise QueryError(f"field {field_path!r} is not a dense_vector field")
    similarity = _vector_similarity(snapshot.mapping, field_path)
    ctx = _Context(snapshot)
    matcher = compile_query(filter_query, ctx) if filter_query else None
    query = np.asarray(vector, dtype=np.float64)
    query_norm = float(np.linalg.norm(query))
    scored: list[tuple[float, int, Doc]] = []
    for doc in snapshot.docs:
        if matcher is not None and matcher(doc, doc.source, "") is None:
            continue
        value = doc._vectors.get(field_path)
        if value is None:
            found = raw_values(doc.source, "", field_path)
            if not found:
                continue
            arr = np.asarray(found, dtype=np.float64)
            value = doc._vectors[field_path] = (arr, float(np.linalg.norm(arr)))
        arr, norm = value
        if arr.shape != query.shape:
            raise QueryError(f"vector of {arr.shape[0]} dims in {doc.id} vs a query of {query.shape[0]} dims")
        if similarity == "l2_norm":
            score = 1 / (1 + float(np.sum((arr - query) ** 2)))
        else:
            score = _SIMILARITIES[similarity](float(arr @ query), query_norm, norm)
        if score is not None:
            scored.append((score, doc.seq, doc))
    scored.sort(key=lambda s: (-s[0], s[1]))
    top = scored[:k]
    return {
        "took": 0,
        "timed_out": False,
        "hits": {
            "total": {"value": len(top), "relation": "eq"},
            "max_score": top[0][0] if top else None,
            "hits": [{"_index": snapshot.name, "_id": doc.id, "_score": score} for score, _, doc in top],
        },
    }


def _vector_similarity(mapping: Mapping, field_path: str) -> str:
    similarity = mapping.specs.get(field_path, {}).get("similarity", "cosine")
    if similarity not in (*_SIMILARITIES, "l2_norm"):
        raise UnsupportedQueryError(f"vector similarity {similarity!r} is not supported")
    return similarity


# ---------------------------------------------------------------------------------------------------
# Updates
# ---------------------------------------------------------------------------------------------------


def deep_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Elasticsearch's partial-update merge: objects merge recursively, anything else is replaced."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = value
    return target


def _squash(source: str) -> str:
    return re.sub(r"\s+", "", source)


# The painless scripts argilla-server 2.8 sends (commons.py), whitespace removed. Only these run.
_UPSERT_RESPONSE = _squash(
    """
    if (ctx._source.responses == null) { ctx._source.responses = [] }
    for (int i=ctx._source.responses.length-1; i>=0; i--) {
        if (ctx._source.responses[i].id == params.response.id) { ctx._source.responses.remove(i); }
    }
    ctx._source.responses.add(params.response)
    """
)
_DELETE_RESPONSE = _squash(
    """
    if (ctx._source.responses != null) {
        for (int i=ctx._source.responses.length-1; i>=0; i--) {
            if (ctx._source.responses[i].id == params.response.id) { ctx._source.responses.remove(i); }
        }
    }
    """
)
_REMOVE_SUGGESTION = re.compile(r'^ctx\._source\["suggestions"\]\.remove\("(?P<question>[^"\\]*)"\);?$')


def _without_response(responses: list[Any], response_id: Any) -> list[Any]:
    return [r for r in responses if not (isinstance(r, dict) and r.get("id") == response_id)]


def run_script(source: dict[str, Any], script: Any) -> dict[str, Any]:
    """Run one of argilla-server's painless update scripts, in Python, with the same semantics."""
    if isinstance(script, str):
        script = {"source": script}
    if script.get("lang", "painless") != "painless" or "id" in script:
        raise UnsupportedQueryError("only inline painless scripts are supported")
    code = _squash(script.get("source", ""))
    params = script.get("params") or {}
    if code in (_UPSERT_RESPONSE, _DELETE_RESPONSE):
        response = params["response"]
        responses = source.get("responses")
        if code == _UPSERT_RESPONSE:
            source["responses"] = _without_response(_as_list(responses), response["id"]) + [response]
        elif responses is not None:
            source["responses"] = _without_response(_as_list(responses), response["id"])
        return source
    removal = _REMOVE_SUGGESTION.match(code)
    if removal:
        # Painless would fail on a document without suggestions; removing nothing is the useful answer.
        suggestions = source.get("suggestions")
        if isinstance(suggestions, dict):
            suggestions.pop(removal.group("question"), None)
        return source
    raise UnsupportedQueryError(f"update script not supported by the pickloop-sqlite engine: {code[:200]!r}")


def apply_update(source: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Apply an `_update` body (`doc` partial update or `script`) to a document's source, in place."""
    unknown = set(body) - {"doc", "script"}
    if unknown or ("doc" in body) == ("script" in body):
        raise UnsupportedQueryError(f"update body needs exactly one of doc/script, got {sorted(body)}")
    if "doc" in body:
        return deep_merge(source, body["doc"])
    return run_script(source, body["script"])
