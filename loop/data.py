"""Conversations: load, validate and normalise QA data to the `messages` format TRL expects.

Input is a JSONL file or an HF dataset (a local folder or a Hub id + revision), with rows in either
form: `{"id", "question", "answer"}` or `{"id", "messages": [{"role", "content"}, ...]}`. Every row is
checked before anything is returned, so a bad file fails with file, line and field and no step writes
an artifact from it. Rows without an id get a stable content hash, so the same conversation always
has the same id (record ids in Argilla and revisions on the Hub are built from it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loop.errors import DataError

if TYPE_CHECKING:
    import datasets

ROLES = ("system", "user", "assistant")
MAX_REPORTED_ERRORS = 10
PROVENANCE_COLUMNS = ("round", "choice", "annotator_count", "agreement")
"""Columns every published round keeps beside `id` and `messages` (see docs/design.md, Data)."""


@dataclass(frozen=True)
class Example:
    """One conversation. `extra` holds every other column of the row (provenance, references...)."""

    id: str
    messages: list[dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)

    def assistant_turns(self) -> list[int]:
        """Indices in `messages` of the assistant turns, in order."""
        return [i for i, m in enumerate(self.messages) if m["role"] == "assistant"]


def content_id(messages: list[dict[str, str]]) -> str:
    """Stable id from the conversation's text: same messages, same id, on every machine."""
    canonical = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return "h-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class _Row(Exception):
    """One row's problem, raised inside validation and turned into a `DataError` with its position."""

    def __init__(self, field: str | None, message: str):
        self.field, self.message = field, message


def _string(value: Any, name: str) -> str:
    if value is None:
        raise _Row(name, f"missing {name!r}; add it as a non-empty string")
    if not isinstance(value, str):
        raise _Row(name, f"{name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _Row(name, f"{name!r} is empty; write the text or drop the row")
    return value


def _messages(value: Any, *, answer_optional: bool = False) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _Row("messages", "'messages' must be a non-empty list of {'role', 'content'} objects")
    out = []
    for i, msg in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _Row(where, f"each message must be an object, got {type(msg).__name__}")
        role = msg.get("role")
        if role not in ROLES:
            raise _Row(f"{where}.role", f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        content = _string(msg.get("content"), f"{where}.content")
        previous = out[-1]["role"] if out else None
        if role == "system" and i != 0:
            raise _Row(f"{where}.role", "a 'system' message may only come first")
        if role == "assistant" and previous != "user":
            raise _Row(f"{where}.role", "an 'assistant' turn must follow a 'user' turn")
        if role == "user" and previous == "user":
            raise _Row(f"{where}.role", "two 'user' turns in a row; merge them or add the answer between")
        out.append({"role": role, "content": content})
    if out[-1]["role"] == "user" and answer_optional:
        return out
    if out[-1]["role"] != "assistant":
        raise _Row(
            f"messages[{len(out) - 1}].role",
            "the conversation must end with an 'assistant' turn (the answer to train on)",
        )
    return out


def _present(row: dict[str, Any], key: str) -> bool:
    return row.get(key) is not None


def normalise_row(row: Any, *, answer_optional: bool = False) -> Example:
    """Validate one row and return it as an `Example` (id may be a placeholder: see `_with_id`).

    `answer_optional` (evaluation questions, whose reference answer is optional): a row may be a
    `question` alone, or `messages` ending with the user turn to be answered."""
    if not isinstance(row, dict):
        raise _Row(None, f"each row must be a JSON object, got {type(row).__name__}")
    has_messages = _present(row, "messages")
    has_qa = _present(row, "question") or _present(row, "answer")
    if has_messages and has_qa:
        raise _Row("messages", "row has both 'messages' and 'question'/'answer'; keep one form")
    if has_messages:
        messages = _messages(row["messages"], answer_optional=answer_optional)
    elif has_qa:
        question = _string(row.get("question"), "question")
        messages = [{"role": "user", "content": question}]
        if not (answer_optional and row.get("answer") is None):
            messages.append({"role": "assistant", "content": _string(row.get("answer"), "answer")})
    else:
        raise _Row("messages", "row needs 'messages' or 'question' and 'answer'")
    raw_id = row.get("id")
    if raw_id is None:
        ex_id = content_id(messages)
    elif isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise _Row("id", f"'id' must be a string or an integer, got {type(raw_id).__name__}")
    elif not str(raw_id).strip():
        raise _Row("id", "'id' is empty; give a unique id or leave the key out for a content hash")
    else:
        ex_id = str(raw_id)
    extra = {k: v for k, v in row.items() if k not in ("id", "messages", "question", "answer")}
    return Example(id=ex_id, messages=messages, extra=extra)


def validate_rows(
    rows: Iterable[tuple[int, Any]], source: str, *, row_word: str = "line", answer_optional: bool = False
) -> list[Example]:
    """Validate `(position, row)` pairs; raise one `DataError` for the first problem, listing a few more."""
    examples: list[Example] = []
    seen: dict[str, int] = {}
    problems: list[tuple[int, str | None, str]] = []
    for pos, row in rows:
        try:
            if isinstance(row, _Row):
                raise row
            ex = normalise_row(row, answer_optional=answer_optional)
            if ex.id in seen:
                what = "conversation (same text)" if row.get("id") is None else f"id {ex.id!r}"
                raise _Row("id", f"duplicate {what}; first seen at {row_word} {seen[ex.id]}")
            seen[ex.id] = pos
            examples.append(ex)
        except _Row as problem:
            problems.append((pos, problem.field, problem.message))
            if len(problems) > MAX_REPORTED_ERRORS:
                break
    if problems:
        pos, fld, message = problems[0]
        if len(problems) > 1:
            more = "; ".join(f"{row_word} {p} {f or ''}: {m}" for p, f, m in problems[1:MAX_REPORTED_ERRORS])
            message += f" (also {row_word}s with problems: {more})"
        raise DataError(message, file=source, line=pos, field=fld)
    if not examples:
        raise DataError("no rows; the dataset is empty", file=source)
    return examples


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Lines read as bytes and decoded one by one, so a bad byte names its line (not a file offset)."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    n,
                    _Row(
                        None,
                        f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8",
                    ),
                )
                continue
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, _Row(None, f"not valid JSON ({exc.msg} at column {exc.colno}); one object per line")


def load_jsonl(path: str | Path, *, answer_optional: bool = False) -> list[Example]:
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not a JSONL file", file=path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        with path.open("rb") as f:
            head = f.read(8192)
        if b"\0" in head:  # text never holds NUL bytes: an image, archive, parquet or arrow file
            line = head[: head.index(b"\0")].count(b"\n") + 1
            raise DataError("binary data, not JSON lines text; is this the right file?", file=path, line=line)
        return validate_rows(_jsonl_rows(path), str(path), answer_optional=answer_optional)
    except OSError as exc:  # unreadable (permissions, I/O error)
        raise DataError(f"cannot read: {exc.strerror or exc}", file=path) from None


def load_hf(
    path: str, *, revision: str | None = None, split: str = "train", answer_optional: bool = False
) -> list[Example]:
    """Load a local HF dataset folder (`save_to_disk` or data files) or a Hub dataset id + revision."""
    local = Path(path)
    if local.is_dir() and not _has_data(local):
        raise DataError(
            "folder holds no dataset (no `save_to_disk` files and no .jsonl/.json/.parquet/.csv/.arrow "
            "data files); point `data.path` at the file or the dataset folder",
            file=path,
        )
    if not local.exists() and (path.startswith(("/", "./", "../", "~")) or local.suffix in _DATA_SUFFIXES):
        raise DataError("file not found", file=path)
    import datasets

    try:
        if local.is_dir() and (
            (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
        ):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        elif local.is_file() and local.suffix == ".parquet":
            ds = datasets.load_dataset("parquet", data_files=str(local), split="train")
        else:
            ds = datasets.load_dataset(path, revision=revision, split=split)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise DataError(f"cannot load dataset: {exc}", file=path) from exc
    except Exception as exc:
        # datasets wraps parse errors of data files (DatasetGenerationError) and Hub failures in its
        # own classes; each is a bad input, not a bug: one line with its first cause.
        if type(exc).__module__.split(".")[0] not in ("datasets", "huggingface_hub", "pyarrow", "fsspec"):
            raise
        cause = exc.__cause__ or exc
        raise DataError(
            f"cannot load dataset ({type(exc).__name__}): {_first_line(cause)}", file=path
        ) from exc
    source = f"{path}@{revision}[{split}]" if revision else f"{path}[{split}]"
    return validate_rows(enumerate(ds, start=1), source, row_word="row", answer_optional=answer_optional)


def _has_data(folder: Path) -> bool:
    """Does a folder hold something `datasets` can load (saved dataset, or data files anywhere)?"""
    if any((folder / n).exists() for n in ("dataset_info.json", "dataset_dict.json", "state.json")):
        return True
    return any(p.suffix.lower() in _DATA_SUFFIXES for p in folder.rglob("*") if p.is_file())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


_DATA_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt"}


def load_examples(
    path: str | Path, *, revision: str | None = None, split: str = "train", answer_optional: bool = False
) -> list[Example]:
    """Load JSONL (`*.jsonl`/`*.json` lines) or an HF dataset; every row validated and normalised."""
    p = Path(path)
    if p.suffix in (".jsonl", ".json") and revision is None:
        return load_jsonl(p, answer_optional=answer_optional)
    return load_hf(str(path), revision=revision, split=split, answer_optional=answer_optional)


def to_rows(examples: Iterable[Example]) -> list[dict[str, Any]]:
    """Plain rows (`id`, `messages`, every extra column); missing extras become None."""
    examples = list(examples)
    extra_keys = sorted({k for ex in examples for k in ex.extra})
    return [
        {"id": ex.id, "messages": ex.messages, **{k: ex.extra.get(k) for k in extra_keys}} for ex in examples
    ]


def to_dataset(examples: Iterable[Example]) -> datasets.Dataset:
    """A `datasets.Dataset` with `id`, `messages` and the provenance/extra columns kept."""
    import datasets

    return datasets.Dataset.from_list(to_rows(examples))


def write_jsonl(examples: Iterable[Example], path: str | Path) -> Path:
    """Write examples as `messages` JSONL, atomically."""
    from loop.fsutil import write_text

    lines = (json.dumps(r, ensure_ascii=False, default=str) for r in to_rows(examples))
    return write_text(path, "".join(line + "\n" for line in lines))
