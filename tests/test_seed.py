"""`pickloop seed-data` without a model: reading, chunking, parsing, quality, and the OpenAI-compatible
path end to end against a real HTTP server on 127.0.0.1 (`openai_server.CannedServer`) replaying
canned completions keyed by prompt hash. The local-model path is in test_seed_local.py."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from openai_server import CannedServer, prompt_hash

from loop.cli import main
from loop.data import load_examples, to_dataset
from loop.errors import ConfigError, DataError, EndpointError
from loop.seed.backends import EndpointBackend, chat_url
from loop.seed.chunking import chunk_document, chunk_documents, whitespace_tokens
from loop.seed.documents import Document, html_to_text, read_documents
from loop.seed.parse import parse_conversations, parse_pairs
from loop.seed.pipeline import SeedSettings, partial_path, seed_data
from loop.seed.prompts import CONVERSATION_TEMPLATE, QA_TEMPLATE, load_template
from loop.seed.quality import duplicate_indices, grounding

DOCS = Path(__file__).parent / "data" / "seed_docs"
KEY = "sk-test-" + "s3cr3t" * 4


def run_main(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """`pickloop ARGS` in-process through the console entry point (clean errors, exit codes)."""
    monkeypatch.setattr(sys, "argv", ["pickloop", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, err: str) -> str:
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ documents


def test_read_documents_folder() -> None:
    docs = read_documents([DOCS])
    assert [d.doc_id for d in docs] == ["faq.html", "guide.md", "sub/notes.txt"]  # README.json skipped
    faq, guide, notes = docs
    assert (faq.title, guide.title, notes.title) == ("Gadget FAQ", "Widget guide", "notes")
    assert "two batteries & lasts a year" in faq.text
    assert "never in the text" not in faq.text and "color" not in faq.text
    assert faq.text.startswith("# Gadgets")
    assert read_documents([DOCS / "guide.md"])[0].doc_id == "guide.md"


def test_html_blocks_become_paragraphs() -> None:
    title, text = html_to_text("<title> T </title><h2>Head</h2><div>a <b>b</b></div><p>c</p>")
    assert title == "T"
    assert text == "## Head\n\na b\n\nc"


# ------------------------------------------------------------------------------------------- chunking


def test_chunks_follow_headings_and_offsets() -> None:
    (guide,) = [d for d in read_documents([DOCS]) if d.doc_id == "guide.md"]
    chunks = chunk_document(guide, max_tokens=30, overlap_tokens=0)
    assert [c.text.splitlines()[0] for c in chunks] == [
        "# Widget guide",
        "## Installing a widget",
        "## Cleaning a widget",
    ]
    for c in chunks:
        assert guide.text[c.start : c.end] == c.text
        assert c.doc_id == "guide.md" and c.title == "Widget guide"
    assert [c.chunk_id for c in chunk_document(guide, 30, 0)] == [c.chunk_id for c in chunks]
    changed = Document("guide.md", guide.title, guide.text.replace("brass", "steel"), "markdown")
    assert chunk_document(changed, 30, 0)[0].chunk_id != chunks[0].chunk_id
    assert chunk_document(changed, 30, 0)[1].chunk_id == chunks[1].chunk_id


def test_long_paragraph_split_with_overlap_under_budget() -> None:
    words = [f"w{i}" for i in range(100)]
    doc = Document("long.txt", "long", " ".join(words), "text")
    chunks = chunk_document(doc, max_tokens=20, overlap_tokens=5)
    assert all(c.tokens <= 20 for c in chunks)
    assert chunks[0].text.split()[-5:] == chunks[1].text.split()[:5]  # 5 words of overlap
    assert chunks[-1].text.split()[-1] == "w99"
    assert {w for c in chunks for w in c.text.split()} == set(words)


def test_paragraphs_packed_with_overlap() -> None:
    paras = [f"p{i} " + " ".join(["x"] * 4) for i in range(8)]  # 5 words each
    doc = Document("p.md", "p", "\n\n".join(paras), "markdown")
    chunks = chunk_document(doc, max_tokens=12, overlap_tokens=5)
    assert chunks[0].text == "\n\n".join(paras[:2])
    assert chunks[1].text.startswith(paras[1])  # the last paragraph repeated
    assert all(c.tokens <= 12 for c in chunks)


# -------------------------------------------------------------------------------------------- parsing


def test_parse_pairs_tolerant() -> None:
    fenced = 'Here you go:\n```json\n[{"question": "What?", "answer": "That."}, {"q": "x"}]\n```'
    assert parse_pairs(fenced) == [("What?", "That.")]
    lines = "1. Q: What is a widget?\nA: A brass tool.\nIt has gears.\n\nQuestion 2: Why?\nAnswer: Because."
    assert parse_pairs(lines) == [("What is a widget?", "A brass tool. It has gears."), ("Why?", "Because.")]
    assert parse_pairs("no pairs here") == []
    assert parse_pairs('[{"question": "", "answer": "x"}]') == []


def test_parse_conversations() -> None:
    conv = [[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]]
    assert parse_conversations(json.dumps(conv)) == conv
    assert parse_conversations("User: a\nAssistant: b\nUser: c") == conv
    assert parse_conversations('[{"role": "assistant", "content": "b"}]') == []


# -------------------------------------------------------------------------------------------- quality


def test_duplicates_exact_and_near() -> None:
    qs = ["What are widgets made of?", "what are widgets made of", "What are the widgets made of?", "Why?"]
    assert duplicate_indices(qs, 0.85) == {1, 2}
    assert duplicate_indices(qs, 1.0) == {1}


def test_dedup_prefix_filter_matches_pairwise_comparison() -> None:
    """Prefix filtering must drop exactly what comparing each question with every kept one drops."""
    import random

    from loop.seed.quality import normalise
    from loop.textsim import token_f1

    def pairwise(qs: list[str], t: float) -> set[int]:
        kept, exact, dropped = [], set(), set()
        for i, q in enumerate(qs):
            n = normalise(q)
            if n in exact or any(token_f1(n, k) >= t for k in kept):
                dropped.add(i)
            else:
                exact.add(n)
                kept.append(n)
        return dropped

    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(10)]  # small: many near duplicates, repeated words
    for _ in range(100):
        qs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 7))) for _ in range(30)]
        for t in (0.0, 0.5, 0.7, 0.85, 1.0):
            assert duplicate_indices(qs, t) == pairwise(qs, t)


def test_grounding() -> None:
    chunk = "Widgets are small tools made of brass."
    assert grounding("Widgets are made of brass.", chunk) == 1.0
    assert grounding("Purple elephants dance.", chunk) == 0.0


# ----------------------------------------------------------------------------------- endpoint, e2e


def canned(chunks, template, n: int, replies: dict[int, str]) -> dict[str, str]:
    return {
        prompt_hash(template.render(chunks[i].title, chunks[i].text, n)): text for i, text in replies.items()
    }


@pytest.fixture
def server():
    srv = CannedServer().start()
    yield srv
    srv.stop()


def _chunks(tokens: int = 40):
    return chunk_documents(read_documents([DOCS]), tokens, 8, whitespace_tokens)


REPLIES = {
    0: '[{"question": "How many batteries does a gadget run on?", "answer": "A gadget runs on two batteries."},'
    ' {"question": "When were gadgets invented?", "answer": "Gadgets were invented in 1901."}]',
    1: "Q: What are widgets made of?\nA: Widgets are made of brass.\n"
    "Q: What are the widgets made of?\nA: Brass.",  # a near-duplicate of the first question
    2: "I am not sure what you want.",  # nothing parses
    3: "Q: How do you clean a widget?\nA: Purple elephants dance loudly on Tuesdays.",  # ungrounded
}


def test_endpoint_end_to_end(server, tmp_path, capsys, monkeypatch) -> None:
    chunks = _chunks()
    assert len(chunks) == 5
    qa = load_template(QA_TEMPLATE)
    server.replies = canned(chunks, qa, 2, REPLIES)
    server.key = KEY
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "step1.jsonl"
    code, stdout, err = run_main(
        [
            "seed-data",
            str(DOCS),
            "--endpoint",
            server.url,
            "--model",
            "canned",
            "--out",
            str(out),
            "--chunk-tokens",
            "40",
            "--overlap-tokens",
            "8",
            "--pairs-per-chunk",
            "2",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    assert len(server.requests) == 5 and server.requests[0]["body"]["model"] == "canned"
    assert KEY not in stdout + err + out.read_text()
    for label, value in (
        ("pairs generated", 5),
        ("parse failures", 2),
        ("duplicates removed", 1),
        ("ungrounded flagged", 1),
        ("kept", 4),
    ):
        assert any(
            label in line and line.rstrip(" │|").endswith(str(value)) for line in stdout.splitlines()
        ), (label, stdout)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] for r in rows] == [
        "How many batteries does a gadget run on?",
        "When were gadgets invented?",
        "What are widgets made of?",
        "How do you clean a widget?",
    ]
    port = server.url.split(":")[2].split("/")[0]
    for r in rows:
        chunk = next(c for c in chunks if c.chunk_id == r["chunk_id"])
        assert (r["doc_id"], r["doc_title"], r["char_start"], r["char_end"]) == (
            chunk.doc_id,
            chunk.title,
            chunk.start,
            chunk.end,
        )
        assert r["generator"] == f"canned@127.0.0.1:{port}"
        assert r["prompt_sha256"] == hashlib.sha256(QA_TEMPLATE.read_bytes()).hexdigest()
        assert r["id"].startswith(r["chunk_id"] + "-q")
    assert [r["ungrounded"] for r in rows] == [False, False, False, True]
    assert not partial_path(out).exists()
    # what `pickloop run` reads: every row valid, provenance kept as columns
    examples = load_examples(out)
    assert examples[0].messages[1]["content"] == "A gadget runs on two batteries."
    assert examples[0].extra["chunk_id"] == rows[0]["chunk_id"]
    assert set(to_dataset(examples).column_names) >= {"id", "messages", "chunk_id", "grounding", "ungrounded"}


def test_endpoint_conversations_and_drop_ungrounded(server, tmp_path) -> None:
    chunks = _chunks()
    qa, conv = load_template(QA_TEMPLATE), load_template(CONVERSATION_TEMPLATE)
    talk = [
        [
            {"role": "user", "content": "What is a gadget powered by?"},
            {"role": "assistant", "content": "A gadget runs on two batteries."},
            {"role": "user", "content": "For how long?"},
            {"role": "assistant", "content": "It lasts a year."},
        ]
    ]
    server.replies = canned(chunks, qa, 3, REPLIES) | canned(chunks, conv, 1, {0: json.dumps(talk)})
    settings = SeedSettings(
        qa, conv, pairs_per_chunk=3, conversations=1, chunk_tokens=40, overlap_tokens=8, drop_ungrounded=True
    )
    out = tmp_path / "s.jsonl"
    summary = seed_data(read_documents([DOCS]), EndpointBackend(server.url, "canned"), settings, out)
    assert (summary.conversations_generated, summary.ungrounded_dropped) == (1, 1)
    assert summary.parse_failures == 2 + 4  # qa of chunk 2, conversations of chunks 1-4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    (c,) = [r for r in rows if "messages" in r]
    assert c["messages"] == talk[0] and c["id"] == chunks[0].chunk_id + "-c0"
    assert c["prompt_sha256"] == conv.sha256
    assert not any(r["ungrounded"] for r in rows)
    assert len(load_examples(out)) == len(rows) == 4


def _settings(**kw) -> SeedSettings:
    base = dict(pairs_per_chunk=2, chunk_tokens=40, overlap_tokens=8)
    return SeedSettings(load_template(QA_TEMPLATE), load_template(CONVERSATION_TEMPLATE), **(base | kw))


class Stop(Exception):
    pass


def _stop_after(k: int):
    def on_batch(done: int) -> None:
        if done >= k:
            raise Stop

    return on_batch


def test_endpoint_resume_after_kill_and_limit(server, tmp_path) -> None:
    chunks, qa = _chunks(), load_template(QA_TEMPLATE)
    server.replies = canned(chunks, qa, 2, REPLIES) | canned(chunks, qa, 3, REPLIES)
    docs, out = read_documents([DOCS]), tmp_path / "s.jsonl"
    backend = EndpointBackend(server.url, "canned")
    with pytest.raises(Stop):  # killed after 2 chunks
        seed_data(docs, backend, _settings(), out, on_batch=_stop_after(2))
    assert not out.exists()
    assert len(partial_path(out).read_text().splitlines()) == 1 + 2
    with partial_path(out).open("a") as f:
        f.write('{"chunk_id": "c-torn')  # killed in the middle of writing a line
    first = seed_data(docs, backend, _settings(limit=3), out)  # a dry run continues the killed one
    assert (first.chunks_reused, first.chunks_generated, first.complete) == (2, 1, False)
    assert partial_path(out).exists() and len(load_examples(out)) == 3
    full = seed_data(docs, backend, _settings(), out)
    assert (full.chunks_reused, full.chunks_generated, full.complete) == (3, 2, True)
    assert len(server.requests) == 5  # every chunk asked once, over three runs
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows) == 4
    assert not partial_path(out).exists()
    # other settings: the interrupted run's chunks are not reused
    with pytest.raises(Stop):
        seed_data(docs, backend, _settings(), out, on_batch=_stop_after(1))
    again = seed_data(docs, backend, _settings(pairs_per_chunk=3), out)
    assert again.chunks_reused == 0 and again.chunks_generated == 5


def test_endpoint_timeout_is_one_clean_error(server, tmp_path, capsys, monkeypatch) -> None:
    server.mode, server.delay = "slow", 1.5
    out = tmp_path / "s.jsonl"
    code, _, err = run_main(
        [
            "seed-data",
            str(DOCS / "guide.md"),
            "--endpoint",
            server.url,
            "--model",
            "m",
            "--out",
            str(out),
            "--timeout",
            "0.3",
            "--retries",
            "1",
        ],
        capsys,
        monkeypatch,
    )
    assert "did not answer within 0.3s (2 tries)" in one_error(code, err)
    assert len(server.requests) == 2
    assert not out.exists()


def test_endpoint_malformed_reply_leaves_out_unchanged(server, tmp_path, capsys, monkeypatch) -> None:
    server.mode = "malformed"
    out = tmp_path / "s.jsonl"
    out.write_text("old\n")
    code, _, err = run_main(
        ["seed-data", str(DOCS), "--endpoint", server.url, "--model", "m", "--out", str(out)],
        capsys,
        monkeypatch,
    )
    assert "not an OpenAI chat completion" in one_error(code, err)
    assert out.read_text() == "old\n"


def test_endpoint_retries_a_503(server, tmp_path) -> None:
    server.mode = "flaky"
    chunks = _chunks()
    server.replies = canned(chunks, load_template(QA_TEMPLATE), 2, REPLIES)
    backend = EndpointBackend(server.url, "canned", base_wait=0.05)
    summary = seed_data(read_documents([DOCS]), backend, _settings(), tmp_path / "s.jsonl")
    assert len(server.requests) == 6 and summary.kept == 4


def test_endpoint_key_handling(server, tmp_path, capsys, monkeypatch) -> None:
    server.key = KEY
    for var in ("OPENAI_API_KEY", "PICKLOOP_SEED_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    args = [
        "seed-data",
        str(DOCS / "guide.md"),
        "--endpoint",
        server.url,
        "--model",
        "m",
        "--out",
        str(tmp_path / "s.jsonl"),
        "--api-key-file",
        str(key_file),
    ]
    error = one_error(*run_main(args, capsys, monkeypatch)[::2])
    assert "chmod 600" in error and KEY not in error
    key_file.chmod(0o600)
    code, out, err = run_main(args, capsys, monkeypatch)
    assert server.requests[-1]["auth"] == f"Bearer {KEY}"
    assert KEY not in out + err
    with pytest.raises(ConfigError, match="plain http"):
        EndpointBackend("http://example.com/v1", "m", key=KEY)
    server.key = "another"
    args[args.index("--out") + 1] = str(tmp_path / "other.jsonl")  # not the partial file of the last run
    error = one_error(*run_main(args, capsys, monkeypatch)[::2])
    assert "HTTP 401" in error and KEY not in error


def test_chat_url() -> None:
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


def test_hf_dataset_text_column(server, tmp_path, capsys, monkeypatch) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t, "n": i}) + "\n"
            for i, t in enumerate(["Widgets are made of brass.", "", "Gadgets run on two batteries."])
        )
    )
    doc = Document("docs.jsonl#0", "docs.jsonl#0", "Widgets are made of brass.", "dataset")
    (chunk,) = chunk_document(doc, 512, 64)
    server.replies = canned(
        [chunk], load_template(QA_TEMPLATE), 3, {0: "Q: What are widgets made of?\nA: Brass."}
    )
    out = tmp_path / "s.jsonl"
    args = [
        "seed-data",
        str(data),
        "--text-column",
        "text",
        "--endpoint",
        server.url,
        "--model",
        "m",
        "--out",
        str(out),
    ]
    code, stdout, err = run_main(args, capsys, monkeypatch)
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["doc_id"], row["answer"]) == ("docs.jsonl#0", "Brass.")
    assert len(server.requests) == 2  # the empty row is no document
    args[args.index("text")] = "body"
    assert "no column 'body'" in one_error(*run_main(args, capsys, monkeypatch)[::2])


# ------------------------------------------------------------------------------------------ bad input


def _bad(tmp_path: Path, case: str) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    if case == "empty-folder":
        (docs / "image.png").write_bytes(b"\x89PNG")
    elif case == "binary":
        (docs / "a.md").write_bytes(b"# T\n\x00\x01\x02")
    elif case == "not-utf8":
        (docs / "a.txt").write_bytes(b"caf\xe9\n")
    elif case == "unreadable":
        (docs / "a.md").write_text("# T\n\ntext")
        (docs / "a.md").chmod(0)
    elif case == "pdf":
        (docs / "a.pdf").write_bytes(b"%PDF-1.4\n")
    elif case == "prompt":
        (docs / "a.md").write_text("# T\n\ntext")
    return docs


BAD = {
    "empty-folder": "no documents in this folder",
    "binary": "binary data, not text",
    "not-utf8": "not UTF-8 (byte 0xe9)",
    "unreadable": "cannot read: Permission denied",
    "pdf": "needs the `pypdf` package",
    "prompt": "no {chunk} placeholder",
    "missing": "file or folder not found",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_clean_error(case, tmp_path, capsys, monkeypatch, server) -> None:
    if case == "unreadable" and os.geteuid() == 0:
        return _unreadable_as_nobody(server)
    if case == "pdf":
        try:
            import pypdf  # noqa: F401

            pytest.skip("pypdf is installed")
        except ImportError:
            pass
    docs = _bad(tmp_path, case) if case != "missing" else tmp_path / "nope"
    out = tmp_path / "s.jsonl"
    args = ["seed-data", str(docs), "--endpoint", server.url, "--model", "m", "--out", str(out)]
    if case == "prompt":
        prompt = tmp_path / "p.txt"
        prompt.write_text("Write {n} pairs.")
        args += ["--prompt-file", str(prompt)]
    error = one_error(*run_main(args, capsys, monkeypatch)[::2])
    assert BAD[case] in error
    assert not out.exists() and not partial_path(out).exists()
    assert server.requests == []


def _unreadable_as_nobody(server) -> None:
    """Root reads any file: run the command as `nobody` (as tests/test_bad_inputs.py does)."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    base = Path(tempfile.mkdtemp(prefix="pickloop-seed-"))
    try:
        os.chmod(base, 0o777)
        docs = _bad(base, "unreadable")
        os.chmod(docs, 0o755)
        out = base / "s.jsonl"
        command = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "loop.cli",
        ]
        args = ["seed-data", str(docs), "--endpoint", server.url, "--model", "m", "--out", str(out)]
        env = {**os.environ, "HOME": str(base), "PICKLOOP_HOME": str(base / "home")}
        proc = subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=60)
        assert BAD["unreadable"] in one_error(proc.returncode, proc.stderr)
        assert not out.exists() and not partial_path(out).exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_every_document_empty(tmp_path) -> None:
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(DataError, match="every document is empty"):
        read_documents([tmp_path])
    assert issubclass(EndpointError, RuntimeError)


def test_help_shows_the_default_prompt(capsys, monkeypatch) -> None:
    code, out, _ = run_main(["seed-data", "--help"], capsys, monkeypatch)
    assert code == 0
    assert "Reply with a JSON list only" in out and "--pairs-per-chunk" in out
