"""Reading documents: files or folders of Markdown, plain text, HTML and PDF, or an HF dataset's text column.

Each document gets a deterministic id (its path relative to the folder it was found in, the file name
for a file given alone, `dataset#row` for a dataset row), a title (first heading, `<title>`, or the file
name) and its text. Character offsets of chunks refer to this text: for HTML and PDF, the extracted text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from loop.errors import DataError

MARKDOWN = (".md", ".markdown")
TEXT = (".txt", ".text")
HTML = (".html", ".htm")
PDF = (".pdf",)
SUFFIXES = MARKDOWN + TEXT + HTML + PDF


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    kind: str  # "markdown" | "text" | "html" | "pdf" | "dataset"


def read_documents(sources: Iterable[str | Path]) -> list[Document]:
    """Every document under `sources` (files or folders, searched recursively), in a stable order."""
    docs: list[Document] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                raise DataError(
                    f"no documents in this folder (looked for {', '.join(SUFFIXES)}); "
                    "point at a folder of Markdown, text, HTML or PDF files",
                    file=path,
                )
            docs += [read_file(p, p.relative_to(path).as_posix()) for p in files]
        elif path.is_file():
            docs.append(read_file(path, path.name))
        else:
            raise DataError("file or folder not found", file=path)
    seen: set[str] = set()
    for doc in docs:
        if doc.doc_id in seen:
            raise DataError(
                "two documents have this id (the same file name given twice, or in two folders); "
                "give each folder once",
                file=doc.doc_id,
            )
        seen.add(doc.doc_id)
    empty = [d.doc_id for d in docs if not d.text.strip()]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise DataError("every document is empty; nothing to generate from", file=", ".join(empty[:5]))
    return docs


def read_file(path: Path, doc_id: str) -> Document:
    """One file as a `Document`; binary, non-UTF-8 or unreadable files raise `DataError` naming the file."""
    suffix = path.suffix.lower()
    if suffix in PDF:
        return _read_pdf(path, doc_id)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}; check its permissions", file=path) from None
    if b"\0" in raw[:8192]:
        raise DataError(
            "binary data, not text; seed-data reads Markdown, text, HTML (and PDF with pypdf)", file=path
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", file=path, line=line
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if suffix in HTML:
        title, body = html_to_text(text)
        return Document(doc_id, title or _first_heading(body) or path.stem, body, "html")
    kind = "markdown" if suffix in MARKDOWN else "text"
    title = (_first_heading(text) if kind == "markdown" else None) or path.stem
    return Document(doc_id, title, text, kind)


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)
    return match.group(1).strip() if match else None


def _read_pdf(path: Path, doc_id: str) -> Document:
    try:
        import pypdf
    except ImportError:
        raise DataError(
            "reading PDF needs the `pypdf` package (pip install pypdf), or convert the file to text first",
            file=path,
        ) from None
    try:
        reader = pypdf.PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}; check its permissions", file=path) from None
    except Exception as exc:  # pypdf's own errors for damaged files
        raise DataError(f"cannot read this PDF ({type(exc).__name__}: {exc})", file=path) from None
    return Document(doc_id, str(title), "\n\n".join(p.strip() for p in pages), "pdf")


class _HTMLText(HTMLParser):
    """Visible text of an HTML page: blocks become paragraphs, `<h1>`..`<h6>` Markdown headings."""

    BLOCKS = frozenset(
        [
            "p",
            "div",
            "section",
            "article",
            "main",
            "header",
            "footer",
            "li",
            "ul",
            "ol",
            "table",
            "tr",
            "pre",
            "blockquote",
            "br",
            "dd",
            "dt",
            "figure",
        ]
    )
    SKIP = frozenset({"script", "style", "noscript", "template", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, text) of an HTML page, with the standard library's parser (no extra dependency)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join("".join(parser.title).split()) or None
    return title, text


def read_dataset(
    path: str,
    text_column: str,
    *,
    split: str = "train",
    title_column: str | None = None,
    id_column: str | None = None,
) -> list[Document]:
    """Rows of an HF dataset (local `save_to_disk` folder, data file, or Hub id) as documents."""
    import datasets

    local = Path(path)
    try:
        if local.is_dir() and (
            (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
        ):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        elif local.is_file():
            fmt = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(local.suffix)
            if fmt is None:
                raise DataError("not a dataset file (.jsonl, .json, .parquet, .csv)", file=path)
            ds = datasets.load_dataset(fmt, data_files=str(local), split="train")
        else:
            ds = datasets.load_dataset(path, split=split)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"cannot load dataset ({type(exc).__name__}): {str(exc).splitlines()[0][:200]}", file=path
        ) from None
    for col in (text_column, title_column, id_column):
        if col is not None and col not in ds.column_names:
            raise DataError(
                f"no column {col!r}; the dataset has {', '.join(ds.column_names)}", file=path, field=col
            )
    name = local.name if local.exists() else path
    return list(_dataset_docs(ds, name, path, text_column, title_column, id_column))


def _dataset_docs(ds, name: str, path: str, text_column: str, title_column, id_column) -> Iterator[Document]:
    for n, row in enumerate(ds):
        text = row[text_column]
        if not isinstance(text, str):
            raise DataError(f"{text_column!r} must be a string", file=path, line=n + 1, field=text_column)
        if not text.strip():
            continue
        doc_id = str(row[id_column]) if id_column else f"{name}#{n}"
        title = str(row[title_column]) if title_column else _first_heading(text) or doc_id
        yield Document(doc_id, title, text.replace("\r\n", "\n"), "dataset")
