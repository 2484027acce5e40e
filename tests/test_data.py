from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_fixtures import FAQ, write_jsonl

from loop.data import Example, content_id, load_examples, to_dataset
from loop.data import write_jsonl as save_jsonl
from loop.errors import DataError

GOOD_QA = {"id": "q1", "question": "What is Python?", "answer": "A language."}
GOOD_CHAT = {
    "id": "c1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye?"},
        {"role": "assistant", "content": "Bye."},
    ],
}


def msgs(*pairs: tuple[str, object]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


BAD_ROWS = [
    # (row, field, words in the message)
    ({"id": "x", "answer": "A"}, "question", "missing 'question'"),
    ({"id": "x", "question": "Q?"}, "answer", "missing 'answer'"),
    ({"id": "x", "question": "  ", "answer": "A"}, "question", "is empty"),
    ({"id": "x", "question": "Q?", "answer": 3}, "answer", "must be a string, got int"),
    ({"id": "x"}, "messages", "needs 'messages' or 'question'"),
    ({"id": "x", "messages": []}, "messages", "non-empty list"),
    ({"id": "x", **msgs(("user", "Q?"), ("assistant", ["A"]))}, "messages[1].content", "must be a string"),
    ({"id": "x", **msgs(("user", "Q?"), ("assistant", ""))}, "messages[1].content", "is empty"),
    ({"id": "x", **msgs(("user", "Q?"))}, "messages[0].role", "must end with an 'assistant' turn"),
    (
        {"id": "x", **msgs(("user", "Q?"), ("assistant", "A"), ("user", "Q2?"))},
        "messages[2].role",
        "must end",
    ),
    ({"id": "x", **msgs(("user", "Q?"), ("bot", "A"))}, "messages[1].role", "unknown role 'bot'"),
    (
        {"id": "x", "messages": [{"role": "user"}, {"role": "assistant", "content": "A"}]},
        "messages[0].content",
        "missing",
    ),
    ({"id": "x", **msgs(("assistant", "A"))}, "messages[0].role", "must follow a 'user' turn"),
    (
        {"id": "x", **msgs(("user", "Q"), ("system", "S"), ("assistant", "A"))},
        "messages[1].role",
        "only come first",
    ),
    ({"id": "", "question": "Q?", "answer": "A"}, "id", "'id' is empty"),
    ({"id": 1.5, "question": "Q?", "answer": "A"}, "id", "string or an integer"),
    (
        {"id": "x", "question": "Q?", "answer": "A", **msgs(("user", "Q"), ("assistant", "A"))},
        "messages",
        "both",
    ),
    (["not", "an", "object"], None, "must be a JSON object"),
]


@pytest.mark.parametrize(
    ("row", "field", "words"), BAD_ROWS, ids=[b[2] + f"-{i}" for i, b in enumerate(BAD_ROWS)]
)
def test_bad_row_names_file_line_and_field(
    tmp_path: Path, row: object, field: str | None, words: str
) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD_QA, row])
    with pytest.raises(DataError) as info:
        load_examples(path)
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), 2, field)
    assert words in str(err)
    assert str(err).startswith(f"{path}:2")


def test_bad_json_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD_QA, "", '{"id": "b", "question": "Q?",'])
    with pytest.raises(DataError, match="not valid JSON") as info:
        load_examples(path)
    assert (info.value.line, info.value.field) == (3, None)


def test_duplicate_ids_point_at_first_occurrence(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD_QA, GOOD_CHAT, {**GOOD_QA, "answer": "Other."}])
    with pytest.raises(DataError, match="duplicate id 'q1'; first seen at line 1") as info:
        load_examples(path)
    assert (info.value.line, info.value.field) == (3, "id")


def test_duplicate_content_without_ids(tmp_path: Path) -> None:
    row = {"question": "Q?", "answer": "A."}
    with pytest.raises(DataError, match="duplicate conversation") as info:
        load_examples(write_jsonl(tmp_path / "d.jsonl", [row, row]))
    assert info.value.line == 2


def test_several_errors_are_listed_and_first_is_raised(tmp_path: Path) -> None:
    rows = [GOOD_QA, {"question": "Q?"}, {"answer": "A"}, {"id": "z", **msgs(("user", "Q"), ("robot", "A"))}]
    with pytest.raises(DataError) as info:
        load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    text = str(info.value)
    assert info.value.line == 2
    assert "line 3 question" in text and "line 4 messages[1].role" in text


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="empty"):
        load_examples(write_jsonl(tmp_path / "e.jsonl", [""]))


def test_both_forms_normalise_to_messages(tmp_path: Path) -> None:
    extra = {**GOOD_QA, "round": 2, "choice": "model"}
    examples = load_examples(write_jsonl(tmp_path / "d.jsonl", [extra, GOOD_CHAT]))
    qa, chat = examples
    assert qa == Example(
        "q1",
        [{"role": "user", "content": "What is Python?"}, {"role": "assistant", "content": "A language."}],
        {"round": 2, "choice": "model"},
    )
    assert chat.messages == GOOD_CHAT["messages"]
    assert chat.assistant_turns() == [2, 4]


def test_missing_ids_get_stable_content_hash(tmp_path: Path) -> None:
    rows = [{"question": "Q?", "answer": "A."}, {"id": 7, "question": "Q2?", "answer": "B."}]
    first = load_examples(write_jsonl(tmp_path / "a.jsonl", rows))
    again = load_examples(write_jsonl(tmp_path / "b.jsonl", rows))
    assert first[0].id == again[0].id == content_id(first[0].messages)
    assert first[0].id.startswith("h-") and len(first[0].id) == 18
    assert first[1].id == "7"
    changed = load_examples(write_jsonl(tmp_path / "c.jsonl", [{"question": "Q?", "answer": "A!"}]))
    assert changed[0].id != first[0].id


def test_faq_data_loads() -> None:
    examples = load_examples(FAQ)
    assert len(examples) == 175
    assert len({e.id for e in examples}) == 175


def test_dataset_round_trip_keeps_provenance(tmp_path: Path) -> None:
    rows = [
        {**GOOD_QA, "round": 1, "choice": "edited", "annotator_count": 2, "agreement": 0.5},
        GOOD_CHAT,
    ]
    examples = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    ds = to_dataset(examples)
    assert set(ds.column_names) == {"id", "messages", "round", "choice", "annotator_count", "agreement"}
    assert ds[0]["choice"] == "edited" and ds[1]["choice"] is None

    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_examples(tmp_path / "saved") == [
        examples[0],
        Example(
            "c1",
            GOOD_CHAT["messages"],
            {"round": None, "choice": None, "annotator_count": None, "agreement": None},
        ),
    ]
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert [e.id for e in load_examples(tmp_path / "d.parquet")] == ["q1", "c1"]
    save_jsonl(examples, tmp_path / "out.jsonl")
    assert [e.messages for e in load_examples(tmp_path / "out.jsonl")] == [e.messages for e in examples]


def test_hf_dataset_errors_name_the_row(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list([GOOD_QA, {"id": "b", "question": "Q?", "answer": ""}]).save_to_disk(
        str(tmp_path / "s")
    )
    with pytest.raises(DataError, match=r"s\[train\]:2, field 'answer'") as info:
        load_examples(tmp_path / "s")
    assert (info.value.line, info.value.field) == (2, "answer")
    assert info.value.file == f"{tmp_path / 's'}[train]"


def test_nothing_written_on_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD_QA, {"id": "q1"}])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError):
        load_examples(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert json.loads(path.read_text().splitlines()[0]) == GOOD_QA


def test_hub_dataset_by_revision(hub) -> None:
    """A Hub id + revision, through the real `datasets` client against the local Hub API server."""
    import datasets
    from hub_fixtures import HUB_USER
    from huggingface_hub import HfApi

    repo = f"{HUB_USER}/pickloop-data-test"
    first = datasets.Dataset.from_list([GOOD_QA, {"id": "q2", "question": "Why?", "answer": "Because."}])
    first.push_to_hub(repo, commit_message="v1")
    HfApi().create_tag(repo, tag="round-1", repo_type="dataset")
    datasets.Dataset.from_list([{**GOOD_QA, "answer": "A better answer."}]).push_to_hub(
        repo, commit_message="v2"
    )

    old = load_examples(repo, revision="round-1")
    assert [(e.id, e.messages[1]["content"]) for e in old] == [("q1", "A language."), ("q2", "Because.")]
    assert [e.messages[1]["content"] for e in load_examples(repo, revision="main")] == ["A better answer."]
