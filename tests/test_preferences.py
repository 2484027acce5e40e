"""Preference data from rankings (`loop.preferences`): the pairs and KTO rows by hand, their round trip
through a published revision (local Hub API server and the local store), and one step of TRL's
DPO, reward and KTO trainers on them with the tiny model."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import datasets
import pytest
from hub_api_server import HubServer
from hub_fixtures import HUB_USER
from huggingface_hub import HfApi
from ml_fixtures import tiny_model  # noqa: F401

from loop.config import PublishSettings
from loop.errors import HubError, StateError
from loop.phases.aggregate import RecordCandidates, Response, decide
from loop.preferences import PreferenceData, read_round, round_preferences, turn_rows
from loop.revisions import HubPublisher, RoundStats, load_round, publish_round, read_lineage

QUESTION = [{"role": "user", "content": "What is a list?"}, {"role": "assistant", "content": "old"}]


def record(
    slots: dict[str, str], original: str | None = "a", turn: int = 1, example: str = "ex1"
) -> RecordCandidates:
    current = slots[original] if original else ""
    return RecordCandidates(f"t/r1/{example}/t{turn}", example, turn, slots, current, original, {})


def ranked(annotator: str, *order: str | tuple[str, ...], **kw) -> Response:
    """Best to worst; a tuple is a tie group sharing one rank."""
    pairs = [
        (slot, rank)
        for rank, item in enumerate(order, start=1)
        for slot in (item if isinstance(item, tuple) else (item,))
    ]
    return Response(annotator, tuple(pairs), **kw)


def sides(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]


SLOTS = {"a": "orig", "b": "model one", "c": "model two"}


# -- ranking -> pairs ------------------------------------------------------------------------------


def test_ties_give_no_pair_and_sources_follow_the_original_slot():
    pairs, kto = turn_rows(record(SLOTS), [ranked("ann", ("a", "b"), "c")], QUESTION[:1], 3)
    assert sides(pairs) == [("orig", "model two"), ("model one", "model two")]
    assert [(p["chosen_source"], p["rejected_source"]) for p in pairs] == [
        ("original", "model"),
        ("model", "model"),
    ]
    first = pairs[0]
    assert first["prompt"] == QUESTION[:1]
    assert first["chosen"] == [{"role": "assistant", "content": "orig"}]
    assert first["id"] == "t/r1/ex1/t1/a>c"
    assert (first["round"], first["example_id"], first["turn"]) == (3, "ex1", 1)
    assert (first["chosen_by"], first["rejected_by"], first["annotators"]) == (["ann"], [], 1)
    assert first["margin"] == 1.5  # a and b share (2+1)/2 points, c gets 0
    assert first["agreement"] is None  # one ranking
    # KTO: the top tier (a, b) desirable, c not
    assert [(r["completion"][0]["content"], r["label"], r["source"]) for r in kto] == [
        ("orig", True, "original"),
        ("model one", True, "model"),
        ("model two", False, "model"),
    ]


def test_everything_tied_gives_nothing():
    assert turn_rows(record(SLOTS), [ranked("ann", ("a", "b", "c"))], QUESTION[:1], 1) == ([], [])


def test_pairs_follow_the_aggregated_borda_ranking_with_each_annotators_side():
    responses = [ranked("ann1", "b", "a", "c"), ranked("ann2", "a", "b", "c"), ranked("ann3", "b", "c", "a")]
    # Borda: b = 2 + 1 + 2 = 5, a = 1 + 2 + 0 = 3, c = 0 + 0 + 1 = 1
    pairs, _ = turn_rows(record(SLOTS), responses, QUESTION[:1], 1)
    assert sides(pairs) == [("model one", "orig"), ("model one", "model two"), ("orig", "model two")]
    assert [(p["chosen_by"], p["rejected_by"], p["margin"]) for p in pairs] == [
        (["ann1", "ann3"], ["ann2"], 2.0),
        (["ann1", "ann2", "ann3"], [], 4.0),
        (["ann1", "ann2"], ["ann3"], 2.0),
    ]
    assert all(p["annotators"] == 3 for p in pairs)
    # Kendall's W: rank sums a 6, b 4, c 8 (mean 6), S = 8, W = 12 * 8 / (3^2 * (3^3 - 3)) = 4/9
    assert pairs[0]["agreement"] == pytest.approx(4 / 9)
    # the aggregate's winner is never on the rejected side
    winner = decide(record(SLOTS), responses).answer
    assert winner == "model one" and winner not in [r for _, r in sides(pairs)]


def test_unranked_slots_tie_for_last():
    pairs, _ = turn_rows(record(SLOTS), [ranked("ann", "c")], QUESTION[:1], 1)
    assert sides(pairs) == [("model two", "orig"), ("model two", "model one")]


def test_edits_are_above_every_candidate_and_not_compared_with_each_other():
    responses = [
        ranked("bob", "b", "a", "c", edited="  Bob's answer. "),
        ranked("amy", "b", "c", "a", edited="Amy's answer."),
        ranked("cat", "a", "b", "c", edited="Amy's  answer."),  # same edit as amy, whitespace aside
        ranked("dan", "b", "a", "c", edited="model two"),  # equal to a candidate: not an edit
    ]
    pairs, kto = turn_rows(record(SLOTS), responses, QUESTION[:1], 1)
    edit_pairs = [p for p in pairs if p["chosen_source"] == "edited"]
    assert sides(edit_pairs) == [
        ("Amy's answer.", "model one"),
        ("Amy's answer.", "orig"),
        ("Amy's answer.", "model two"),
        ("Bob's answer.", "model one"),
        ("Bob's answer.", "orig"),
        ("Bob's answer.", "model two"),
    ]
    assert {tuple(p["chosen_by"]) for p in edit_pairs} == {("amy", "cat"), ("bob",)}
    assert all(p["margin"] is None and p["rejected_by"] == [] for p in edit_pairs)
    assert [p["id"] for p in edit_pairs[:1]] == ["t/r1/ex1/t1/edit-1>b"]
    assert len(pairs) == 6 + 3  # plus the candidates' own 3 pairs
    # KTO: both edits desirable, every candidate undesirable (an edit says none was right)
    assert [(r["completion"][0]["content"], r["label"]) for r in kto] == [
        ("Amy's answer.", True),
        ("Bob's answer.", True),
        ("model one", False),
        ("orig", False),
        ("model two", False),
    ]


def test_identical_texts_are_one_answer_placed_at_its_best_copy():
    slots = {"a": "same", "b": "other", "c": "same "}
    pairs, kto = turn_rows(record(slots), [ranked("ann", "a", "b", "c")], QUESTION[:1], 1)
    assert sides(pairs) == [("same", "other")]
    assert len(kto) == 2


def test_none_acceptable_majority_keeps_pairs_but_no_desirable_candidate():
    responses = [
        ranked("a1", "b", "a", "c", none_acceptable=True),
        ranked("a2", "b", "c", "a", none_acceptable=True),
    ]
    pairs, kto = turn_rows(record(SLOTS), responses, QUESTION[:1], 1)
    assert sides(pairs) == [("model one", "orig"), ("model one", "model two")]  # a and c: 1 point each
    assert [r["label"] for r in kto] == [False, False, False]


def test_a_round_uses_history_skips_incomplete_records_and_is_deterministic(tmp_path: Path):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Is Python compiled?"},
        {"role": "assistant", "content": "To bytecode."},
        {"role": "user", "content": "Where is it stored?"},
        {"role": "assistant", "content": "In .pyc files."},
    ]
    second = record({"a": "In .pyc files.", "b": "In memory."}, turn=4, example="mt")
    first = record({"a": "To bytecode.", "b": "No."}, turn=2, example="mt")
    lonely = record({"a": "x", "b": "y"}, turn=1, example="q")
    responses = {
        second.record_id: [ranked("ann1", "b", "a"), ranked("ann2", "a", "b"), ranked("ann3", "b", "a")],
        first.record_id: [ranked("ann1", "a", "b"), ranked("ann2", "a", "b")],
        lonely.record_id: [ranked("ann1", "b", "a")],  # below min_submitted=2: nothing
    }
    conversations = {"mt": conversation, "q": QUESTION}
    data = round_preferences(2, [second, first, lonely], responses, conversations, min_submitted=2)
    assert sides(data.pairs) == [("In memory.", "In .pyc files."), ("To bytecode.", "No.")]
    assert data.pairs[0]["prompt"] == conversation[:4]  # system message and the earlier turns
    assert data.pairs[1]["prompt"] == conversation[:2]
    assert data.pairs[0]["agreement"] == pytest.approx(1 / 9)  # rank sums 4, 5: S = 0.5, 12 * 0.5 / (9 * 6)
    assert data.counts() == {"preferences": 2, "preferences_kto": 4}

    # the same rows from pulled.json (as the pull phase writes it), every time
    from loop.data import Example

    pulled = tmp_path / "pulled.json"
    pulled.write_text(
        json.dumps(
            {
                "records": [asdict(r) for r in (second, first, lonely)],
                "responses": {k: [asdict(r) for r in v] for k, v in responses.items()},
                "discarded": 0,
                "draft": 0,
            }
        )
    )
    examples = [Example("mt", conversation), Example("q", QUESTION)]
    assert (
        read_round(pulled, examples, 2, min_submitted=2)
        == data
        == read_round(pulled, examples, 2, min_submitted=2)
    )
    assert read_round(tmp_path / "absent.json", examples, 2) == PreferenceData([], [])
    with pytest.raises(StateError, match="example 'mt' turn 4 is not in the round's input"):
        read_round(pulled, [Example("mt", conversation[:3])], 2, min_submitted=2)


def test_reviewed_turns_follow_the_votes_that_decided_them(tmp_path: Path):
    """A labeler reviewer's ranking replaces their own and the merged Borda gives the pairs; an owner's
    ranking alone gives them; a queued record nobody reviewed keeps the round's votes."""
    from loop.data import Example
    from loop.phases.review import review_decision

    recs = [record(SLOTS, example=f"q{i}") for i in range(4)]
    votes = [ranked("ann1", "b", "a", "c"), ranked("ann2", "c", "a", "b")]
    responses = {r.record_id: list(votes) for r in recs}
    convs = {f"q{i}": QUESTION for i in range(4)}
    rev = {  # q0: one more labeler; q1: ann1 takes a second look; q2: an owner; q3: nobody
        recs[0].record_id: [{"user": "ann3", "ranking": [["c", 1], ["b", 2], ["a", 3]], "owner": False}],
        recs[1].record_id: [{"user": "ann1", "ranking": [["c", 1], ["a", 2], ["b", 3]], "owner": False}],
        recs[2].record_id: [
            {"user": "boss", "ranking": [["a", 1], ["b", 2], ["c", 3], ["x", 4]], "owner": True}
        ],
    }
    rows = [
        {"record": rid, "status": "submitted", "better_answer": None, "none_acceptable": False, **r}
        for rid, got in rev.items()
        for r in got
    ] + [
        {
            "record": recs[3].record_id,
            "user": "ann3",
            "status": "draft",
            "ranking": [["b", 1]],
            "owner": False,
        }
    ]
    base = decide(recs[0], votes, min_submitted=2)
    decisions = []
    for rec in recs:
        got = [
            Response(r["user"], tuple(tuple(x) for x in r["ranking"] if x[0] in rec.slots))
            for r in rev.get(rec.record_id, [])
        ]
        decisions.append(review_decision(rec, votes, got, {"boss"}, base))
    assert [d.reviewed_by for d in decisions] == ["labeler", "labeler", "owner", None]
    assert [d.answer for d in decisions[:3]] == ["model two", "model two", "orig"]

    def top(data: PreferenceData, i: int) -> list[tuple[str, str]]:
        return sides([p for p in data.pairs if p["example_id"] == f"q{i}"])

    data = round_preferences(1, recs, responses, convs, min_submitted=2)
    assert data.pairs == [], "before: the two rankings tie every candidate (a conflict)"

    # the same merge as the review phase, from its two files, every time
    (tmp_path / "reviewed.jsonl").write_text("".join(json.dumps(asdict(d)) + "\n" for d in decisions))
    (tmp_path / "review_responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pulled = tmp_path / "pulled.json"
    pulled.write_text(
        json.dumps(
            {
                "records": [asdict(r) for r in recs],
                "responses": {k: [asdict(r) for r in v] for k, v in responses.items()},
                "discarded": 0,
                "draft": 1,
            }
        )
    )
    examples = [Example(f"q{i}", QUESTION) for i in range(4)]

    def read() -> PreferenceData:
        return read_round(
            pulled,
            examples,
            1,
            min_submitted=2,
            reviewed=tmp_path / "reviewed.jsonl",
            review_responses=tmp_path / "review_responses.jsonl",
        )

    after = read()
    assert after == read(), "deterministic"
    assert read_round(pulled, examples, 1, min_submitted=2) == data, "without the review files: as before"
    # q0: ann1 b2 a1 c0, ann2 c2 a1 b0, ann3 c2 b1 a0 -> c 4, b 3, a 2: the published answer on top.
    assert top(after, 0) == [("model two", "model one"), ("model two", "orig"), ("model one", "orig")]
    q0 = [p for p in after.pairs if p["example_id"] == "q0"]
    assert [(p["chosen_by"], p["rejected_by"], p["annotators"]) for p in q0][0] == (
        ["ann2", "ann3"],
        ["ann1"],
        3,
    )
    # q1: ann1's second look (c a b) replaces their first: c 4, a 2, b 0 with two votes.
    q1 = [p for p in after.pairs if p["example_id"] == "q1"]
    assert sides(q1)[0] == ("model two", "orig") and q1[0]["annotators"] == 2
    assert q1[0]["chosen_by"] == ["ann1", "ann2"]
    # q2: the owner's ranking alone, chosen by the owner; the labelers' conflict gives no pairs.
    q2 = [p for p in after.pairs if p["example_id"] == "q2"]
    assert sides(q2) == [("orig", "model one"), ("orig", "model two"), ("model one", "model two")]
    assert {
        (tuple(p["chosen_by"]), tuple(p["rejected_by"]), p["annotators"], p["reviewed_by"]) for p in q2
    } == {(("boss",), (), 1, "owner")}
    assert [k["label"] for k in after.kto if k["example_id"] == "q2"] == [True, False, False]
    # q3 was queued but nobody reviewed it (the draft does not count): the round's tied votes, no pairs.
    assert top(after, 3) == [] and {
        p["reviewed_by"] for p in after.pairs if p["example_id"] in ("q0", "q1")
    } == {"labeler"}
    # a file written before the `owner` mark: the decision's reviewed_by says who decided
    for r in rows:
        r.pop("owner", None)
    (tmp_path / "review_responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read() == after
    pseudo = after.pseudonymised("k")
    assert all(n.startswith("labeler-") for p in pseudo.pairs for n in p["chosen_by"] + p["rejected_by"])


def test_empty_round_keeps_the_schema():
    empty = PreferenceData([], []).datasets()
    assert len(empty["preferences"]) == 0 and "chosen_by" in empty["preferences"].column_names
    assert empty["preferences_kto"].features["label"].dtype == "bool"


# -- published revisions -------------------------------------------------------------------------

_repos = itertools.count()


def round_data(n: int) -> tuple[datasets.Dataset, PreferenceData]:
    """Round n's dataset and preference data; round 2 has no completed ranking."""
    rows = [
        {
            "id": f"q{i}",
            "messages": [
                {"role": "user", "content": f"Q{i}?"},
                {"role": "assistant", "content": f"A{i}.{n}"},
            ],
        }
        for i in range(3)
    ]
    recs = [
        record({"a": f"A{i}.{n - 1}", "b": f"B{i}.{n}", "c": f"C{i}.{n}"}, example=f"q{i}") for i in range(3)
    ]
    responses = (
        {}
        if n == 2
        else {r.record_id: [ranked("ann1", "b", "a", "c"), ranked("ann2", "b", ("a", "c"))] for r in recs}
    )
    convs = {row["id"]: row["messages"] for row in rows}
    return datasets.Dataset.from_list(rows), round_preferences(n, recs, responses, convs)


def publish(n: int, settings: PublishSettings, **kw):
    ds, prefs = round_data(n)
    stats = RoundStats.from_dataset(ds, n, configs=prefs.counts())
    return publish_round(ds, stats, settings, run_name="t", extra=prefs.datasets(), **kw), prefs


def test_hub_revisions_carry_their_preferences_in_the_tagged_commit(hub: HubServer):
    repo = f"{HUB_USER}/pickloop-prefs-{next(_repos)}"
    settings = PublishSettings(hub_repo=repo)
    published = {n: publish(n, settings) for n in (1, 2, 3)}
    api = HfApi()
    for n, (rev, prefs) in published.items():
        files = set(api.list_repo_files(repo, repo_type="dataset", revision=rev.revision))
        main = datasets.load_dataset(repo, revision=rev.revision, split="train")
        assert main.to_list() == round_data(n)[0].to_list()
        if n == 2:  # nothing ranked: no files (round 1's left the tree), a clear error, 0 in the card
            assert not any(f.startswith("preferences") for f in files)
            with pytest.raises(ValueError, match="preferences"):
                datasets.load_dataset(repo, "preferences", revision="round-2", split="train")
            continue
        assert {
            "preferences/train-00000-of-00001.parquet",
            "preferences_kto/train-00000-of-00001.parquet",
        } <= files
        pairs = datasets.load_dataset(repo, "preferences", revision=rev.revision, split="train")
        assert pairs.to_list() == prefs.pairs and len(pairs) == 9
        kto = datasets.load_dataset(repo, "preferences_kto", revision=rev.revision, split="train")
        assert kto.to_list() == prefs.kto
        assert load_round(n, settings, config="preferences").to_list() == prefs.pairs
    # one card commit per round carries data files and card together, on top of push_to_hub's commit
    titles = [c.title for c in api.list_repo_commits(repo, repo_type="dataset", revision="round-3")]
    assert titles[:2] == ["pickloop t round 3: lineage card", "pickloop t round 3"]
    card = Path(api.hf_hub_download(repo, "README.md", repo_type="dataset", revision="round-3")).read_text()
    assert "config_name: preferences_kto" in card and "num_examples: 9" in card
    assert [r.configs for r in read_lineage(card)] == [
        {"preferences": 9, "preferences_kto": 9},
        {"preferences": 0, "preferences_kto": 0},
        {"preferences": 9, "preferences_kto": 9},
    ]
    assert "| preferences rows | preferences_kto rows |" in card


def test_hub_publish_killed_before_the_card_resumes_with_the_same_rows(hub: HubServer):
    repo = f"{HUB_USER}/pickloop-prefs-{next(_repos)}"
    ds, prefs = round_data(1)
    stats = RoundStats.from_dataset(ds, 1, configs=prefs.counts())
    hub.app.after("commit", lambda: hub.app.inject_failures("commit", 2, 500))  # dies after push_to_hub
    with pytest.raises(HubError):
        HubPublisher(repo, run_name="t", sleep=lambda _s: None, max_tries=2).publish(
            ds, stats, prefs.datasets()
        )
    hub.app.reset()
    again = round_data(1)[1]  # a re-run rebuilds the rows from the same inputs
    assert again == prefs
    done = HubPublisher(repo, run_name="t").publish(ds, stats, again.datasets())
    assert done.created and hub.app.calls("commit") == 1
    noop = HubPublisher(repo, run_name="t").publish(ds, stats, again.datasets())
    assert not noop.created and hub.app.calls("commit") == 1
    assert (
        datasets.load_dataset(repo, "preferences", revision="round-1", split="train").to_list() == prefs.pairs
    )


def test_local_store_revisions_carry_their_preferences(tmp_path: Path):
    settings = PublishSettings(local_dir=tmp_path / "store")
    for n in (1, 2):
        rev, prefs = publish(n, settings)
        folder = Path(rev.url)
        if n == 1:
            assert datasets.load_dataset(str(folder), "preferences", split="train").to_list() == prefs.pairs
            assert load_round(n, settings, config="preferences_kto").to_list() == prefs.kto
        else:
            assert not (folder / "preferences").exists()
        assert datasets.load_dataset(str(folder), split="train").to_list() == round_data(n)[0].to_list()
    assert not publish(1, settings)[0].created


# -- TRL trains on them --------------------------------------------------------------------------


@pytest.mark.train
def test_one_step_of_dpo_reward_and_kto_on_the_published_rows(tiny_model: Path, tmp_path: Path):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, RewardConfig, RewardTrainer

    torch.set_num_threads(1)
    rev, prefs = publish(1, PublishSettings(local_dir=tmp_path / "store"))
    pairs = load_round(1, PublishSettings(local_dir=tmp_path / "store"), config="preferences")
    kto = load_round(1, PublishSettings(local_dir=tmp_path / "store"), config="preferences_kto")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    args = dict(
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=64,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        disable_tqdm=True,
    )
    runs = {
        "dpo": lambda: DPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model),
            args=DPOConfig(output_dir=str(tmp_path / "dpo"), **args),
            train_dataset=pairs,
            processing_class=tokenizer,
        ),
        "reward": lambda: RewardTrainer(
            model=AutoModelForSequenceClassification.from_pretrained(
                tiny_model, num_labels=1, pad_token_id=tokenizer.pad_token_id
            ),
            args=RewardConfig(output_dir=str(tmp_path / "reward"), **args),
            train_dataset=pairs,
            processing_class=tokenizer,
        ),
        "kto": lambda: KTOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model),
            args=KTOConfig(output_dir=str(tmp_path / "kto"), **args),
            train_dataset=kto,
            processing_class=tokenizer,
        ),
    }
    for name, make in runs.items():
        result = make().train()
        assert result.global_step == 1, name
        assert result.training_loss == result.training_loss and result.training_loss > 0, name


def test_publish_pseudonyms_are_stable_per_key_and_hide_the_name():
    from loop.preferences import PreferenceData, pseudonym

    a, b = pseudonym("amy", "k1"), pseudonym("amy", "k1")
    assert a == b and a.startswith("labeler-") and "amy" not in a
    assert pseudonym("amy", "k2") != a and pseudonym("bob", "k1") != a
    data = PreferenceData([{"chosen_by": ["amy"], "rejected_by": ["bob"], "x": 1}], [{"label": True}])
    swapped = data.pseudonymised("k1")
    assert swapped.pairs == [{"chosen_by": [a], "rejected_by": [pseudonym("bob", "k1")], "x": 1}]
    assert swapped.kto == data.kto and data.pairs[0]["chosen_by"] == ["amy"]
