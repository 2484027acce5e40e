"""`pickloop seed-review push|pull` against the real embedded Argilla: labelers accept, fix or reject
generated pairs through the endpoints the UI uses, and only accepted pairs reach the reviewed file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from argilla_setup import rankings
from argilla_setup.connection import Api, Connection
from argilla_setup.users import add_users, credentials_file
from loop.cli import cli
from loop.data import load_examples
from loop.errors import DataError
from loop.seed.documents import read_documents

DOCS = Path(__file__).parent / "data" / "seed_docs"


@pytest.fixture
def env(argilla_stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ARGILLA_API_URL", argilla_stack.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_stack.api_key)
    return argilla_stack


def step1(tmp_path: Path) -> Path:
    guide = next(d for d in read_documents([DOCS]) if d.doc_id == "guide.md")
    end = guide.text.index("\n\n## Installing")
    prov = {"doc_id": "guide.md", "char_start": 0, "char_end": end, "chunk_id": "c-1", "generator": "g"}
    rows = [
        {"id": f"c-1-q{i}", "question": q, "answer": a, **prov}
        for i, (q, a) in enumerate(
            [
                ("What are widgets made of?", "Brass."),
                ("How many gears does a widget have?", "Two."),
                ("Who invented widgets?", "Nobody knows."),
                ("How many springs does a widget have?", "One spring."),
            ]
        )
    ]
    rows.append(
        {
            "id": "c-1-c0",
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Brass."}],
            **prov,
        }
    )
    path = tmp_path / "step1.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_review_push_and_pull(env, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    workspace, dataset = f"ws-{tag}", f"review-{tag}"
    with Api(Connection(env.api_url, env.api_key)) as owner:
        add_users(owner, [f"ra{tag}", f"rb{tag}"], workspace=workspace, create_workspace=True)
    data = step1(tmp_path)
    push = invoke("seed-review", "push", str(data), str(DOCS), "--dataset", dataset, "--workspace", workspace)
    assert push.exit_code == 0 and "4 pair(s) to review" in push.output, push.output
    again = invoke(
        "seed-review", "push", str(data), str(DOCS), "--dataset", dataset, "--workspace", workspace
    )
    assert "4 pair(s) to review" in again.output, "a re-push updates, never duplicates"

    with Api(Connection(env.api_url, env.api_key)) as owner:
        ds = owner.dataset_by_name(dataset, workspace)
        items = owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 10})["items"]
    ids = {r["external_id"]: r["id"] for r in items}
    first = items[0]["fields"]
    assert first["passage"].startswith("**Widget guide**\n\n# Widget guide") and "brass" in first["passage"]

    def answer(user: str, verdicts: dict[str, dict]) -> None:
        key = json.loads(credentials_file(user).read_text())["api_key"]
        with Api(Connection(env.api_url, key)) as api:
            for ext, values in verdicts.items():
                rankings.submit_response(api, ids[ext], values)

    accept, reject = {"decision": {"value": "accept"}}, {"decision": {"value": "reject"}}
    answer(
        f"ra{tag}",
        {"c-1-q0": accept, "c-1-q1": {**accept, "answer_fix": {"value": "Three."}}, "c-1-q2": reject},
    )
    answer(f"rb{tag}", {"c-1-q0": accept, "c-1-q1": accept, "c-1-q2": accept})  # q2: one of two accepts
    out = tmp_path / "reviewed.jsonl"
    pull = invoke(
        "seed-review", "pull", str(data), "--out", str(out), "--dataset", dataset, "--workspace", workspace
    )
    assert pull.exit_code == 0, pull.output
    assert "1 accepted, 1 edited, 1 rejected, 1 not reviewed yet, 1 conversation(s) kept" in pull.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r.get("answer"), r.get("review")) for r in rows] == [
        ("c-1-q0", "Brass.", "accepted"),
        ("c-1-q1", "Three.", "edited"),
        ("c-1-c0", None, None),
    ]
    assert rows[1]["chunk_id"] == "c-1", "provenance kept"
    assert len(load_examples(out)) == 3


def test_pull_without_accepted_pairs_writes_nothing(env, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    data = step1(tmp_path)
    args = ["--dataset", f"review-{tag}", "--workspace", f"ws-{tag}"]
    assert invoke("seed-review", "push", str(data), str(DOCS), *args).exit_code == 0
    out = tmp_path / "reviewed.jsonl"
    with pytest.raises(DataError, match="no accepted pairs yet"):
        invoke("seed-review", "pull", str(data), "--out", str(out), *args)
    assert not out.exists()
    with pytest.raises(DataError, match="'nowhere.md' is not among the given documents"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(data.read_text().replace('"guide.md"', '"nowhere.md"'))
        invoke("seed-review", "push", str(bad), str(DOCS), *args)
