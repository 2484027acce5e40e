"""Publishing round revisions: the real `datasets`/`huggingface_hub` clients against the local Hub API
server (`hub` fixture, tests/hub_fixtures.py), and the local folder store."""

from __future__ import annotations

import itertools
from pathlib import Path

import datasets
import pytest
from hub_api_server import HubServer
from hub_fixtures import HUB_TOKEN, HUB_USER
from huggingface_hub import HfApi

from loop.config import PublishSettings
from loop.errors import ConfigError, HubError, NotFoundError
from loop.revisions import (
    HubPublisher,
    LocalStore,
    RoundStats,
    load_round,
    merge_lineage,
    publish_round,
    read_lineage,
    resolve_token,
    split_card,
)

_repo_numbers = itertools.count()


def new_repo() -> str:
    return f"{HUB_USER}/pickloop-test-{next(_repo_numbers)}"


def round_rows(n: int) -> list[dict]:
    """Round n's dataset: answers differ per round and round 3 has one record more."""
    kinds = ["original", "model", "edited"]
    return [
        {
            "id": f"q{i}",
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": f"Answer {i} as of round {n}"},
            ],
            "round": n,
            "choice": kinds[(i + n) % 3] if n > 0 else "original",
            "annotators": 2,
            "agreement": 0.5 + 0.1 * i,
        }
        for i in range(4 + (n == 3))
    ]


def round_dataset(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_list(round_rows(n))


def stats_for(n: int, **kw) -> RoundStats:
    return RoundStats.from_dataset(
        round_dataset(n), n, base_model="tiny-qwen2", adapter=f"runs/t/round-{n}/adapter", **kw
    )


def publisher(repo: str, **kw) -> HubPublisher:
    """A Hub publisher that does not sleep between retries."""
    return HubPublisher(repo, run_name="t", private=True, sleep=lambda _s: None, **kw)


def titles(repo: str, revision: str | None = None) -> list[str]:
    return [c.title for c in HfApi().list_repo_commits(repo, repo_type="dataset", revision=revision)]


def card_at(repo: str, revision: str) -> str:
    path = HfApi().hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision)
    return Path(path).read_text(encoding="utf-8")


# -- card merge ----------------------------------------------------------------------------------


def test_merge_lineage_keeps_yaml_and_other_sections_and_replaces_its_own():
    card = "---\nconfigs:\n- config_name: default   # odd spacing kept\n---\n# Title\n\nIntro.\n\n## Usage\n\nText.\n"
    once = merge_lineage(card, stats_for(1), "me/ds")
    twice = merge_lineage(once, stats_for(2), "me/ds")
    assert split_card(twice)[0] == split_card(card)[0]
    assert "# Title\n\nIntro.\n\n## Usage\n\nText.\n" in twice
    assert twice.count("## pickloop lineage") == 1
    assert [r.round for r in read_lineage(twice)] == [1, 2]
    assert "| 2 | round-2 | 4 |" in twice
    # the section is replaced in place, so text after it survives a re-merge
    moved = once.replace("## pickloop lineage", "## Before\n\n## pickloop lineage") + "## After\n\nkeep\n"
    assert merge_lineage(moved, stats_for(2), "me/ds").endswith("## After\n\nkeep\n")


def test_round_stats_from_dataset_counts_provenance():
    stats = RoundStats.from_dataset(round_dataset(1), 1, simulated_labelers=True)
    assert stats.records == 4
    assert stats.choices == {"original": 1, "model": 2, "edited": 1}
    assert stats.changed == 3
    assert stats.agreement == pytest.approx(0.65)
    assert "simulated labelers" in merge_lineage("", stats, None)


# -- Hub backend ---------------------------------------------------------------------------------


def test_hub_three_rounds_tags_cards_and_exact_reload(hub: HubServer):
    repo = new_repo()
    settings = PublishSettings(hub_repo=repo, private=True)
    published = [publish_round(round_dataset(n), stats_for(n), settings, run_name="t") for n in (1, 2, 3)]
    assert [p.created for p in published] == [True, True, True]
    api = HfApi()
    assert api.repo_info(repo, repo_type="dataset").private is True
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo, repo_type="dataset").tags}
    assert tags == {f"round-{p.round}": p.commit_sha for p in published}
    for p in published:
        # the tag sits on the card commit, directly on top of that round's push_to_hub commit
        assert titles(repo, p.revision)[:2] == [
            f"pickloop t round {p.round}: lineage card",
            f"pickloop t round {p.round}",
        ]
        assert p.url.endswith(f"/datasets/{repo}/tree/round-{p.round}")
    assert titles(repo).count("pickloop t round 2") == 1

    for n in (1, 2, 3):
        loaded = datasets.load_dataset(repo, revision=f"round-{n}", split="train")
        assert loaded.to_list() == round_rows(n)
        assert load_round(f"round-{n}", settings).to_list() == round_rows(n)

    # YAML header exactly as push_to_hub wrote it; lineage rows up to the round
    pushed_round3 = api.list_repo_commits(repo, repo_type="dataset", revision="round-3")[1].commit_id
    card3, pushed_card3 = card_at(repo, "round-3"), card_at(repo, pushed_round3)
    assert split_card(card3)[0] == split_card(pushed_card3)[0] != ""
    assert "num_examples: 5" in split_card(card3)[0]
    assert [r.round for r in read_lineage(card3)] == [1, 2, 3]
    assert read_lineage(card3)[2] == stats_for(3)
    assert [r.round for r in read_lineage(card_at(repo, "round-1"))] == [1]
    assert "| 3 | round-3 | 5 |" in card3


def test_hub_republish_is_a_noop(hub: HubServer):
    repo = new_repo()
    first = publisher(repo).publish(round_dataset(1), stats_for(1))
    hub.app.reset()
    again = publisher(repo).publish(round_dataset(1), stats_for(1))
    assert again.created is False and again.commit_sha == first.commit_sha
    assert hub.app.calls("commit") == hub.app.calls("preupload") == hub.app.calls("tag_create") == 0
    assert titles(repo).count("pickloop t round 1") == 1


def test_hub_crash_after_push_resumes_without_pushing_again(hub: HubServer):
    repo = new_repo()
    # the push commit lands, then every card commit fails: the process "dies" between push and tag
    hub.app.after("commit", lambda: hub.app.inject_failures("commit", 2, 500))
    with pytest.raises(HubError, match="HTTP 500"):
        publisher(repo, max_tries=2).publish(round_dataset(1), stats_for(1))
    assert titles(repo)[0] == "pickloop t round 1"
    hub.app.reset()
    done = publisher(repo).publish(round_dataset(1), stats_for(1))
    assert done.created is True
    assert hub.app.calls("lfs_batch") == hub.app.calls("lfs_upload") == 0  # nothing pushed again
    assert hub.app.calls("commit") == 1  # only the card
    assert titles(repo)[:2] == ["pickloop t round 1: lineage card", "pickloop t round 1"]
    assert datasets.load_dataset(repo, revision="round-1", split="train").to_list() == round_rows(1)


def test_hub_crash_before_tag_tags_the_existing_commit(hub: HubServer):
    repo = new_repo()
    hub.app.inject_failures("tag_create", 2, 503)
    with pytest.raises(HubError, match="HTTP 503"):
        publisher(repo, max_tries=2).publish(round_dataset(1), stats_for(1))
    hub.app.reset()
    done = publisher(repo).publish(round_dataset(1), stats_for(1))
    assert hub.app.calls("commit") == 0 and hub.app.calls("tag_create") == 1
    assert done.commit_sha == HfApi().list_repo_commits(repo, repo_type="dataset")[0].commit_id


def test_hub_transient_errors_are_retried_and_lost_answers_do_not_duplicate(hub: HubServer):
    repo = new_repo()
    publisher(repo).publish(round_dataset(1), stats_for(1))
    hub.app.reset()
    hub.app.inject_failures("refs", 1, 502)
    hub.app.inject_failures("commit", 1, 504, lost=True)  # the push commit lands, its answer is lost
    hub.app.inject_failures("commit", 1, 503)  # the card commit fails once before landing
    hub.app.inject_failures("tag_create", 1, 500, lost=True)  # the tag is made, its answer is lost
    done = publisher(repo).publish(round_dataset(2), stats_for(2))
    assert done.created is True
    statuses = {route: [s for _, r, _, s in hub.requests if r == route] for route in ("commit", "tag_create")}
    assert statuses == {"commit": [504, 503, 200], "tag_create": [500, 409]}
    assert titles(repo).count("pickloop t round 2") == 1
    assert titles(repo).count("pickloop t round 2: lineage card") == 1
    assert datasets.load_dataset(repo, revision="round-2", split="train").to_list() == round_rows(2)


def test_hub_bad_token_is_a_clear_error_without_the_token(hub: HubServer):
    bad = "hf_" + "x" * 30
    with pytest.raises(HubError) as info:
        publish_round(
            round_dataset(1), stats_for(1), PublishSettings(hub_repo=new_repo()), run_name="t", token=bad
        )
    message = str(info.value)
    assert "401" in message and "HF_TOKEN" in message
    chain: BaseException | None = info.value
    while chain is not None:  # neither the error nor anything it carries shows the token
        assert bad not in str(chain) and bad not in repr(chain.args)
        chain = chain.__cause__ or chain.__context__
    assert HUB_TOKEN not in message


def test_hub_concurrent_push_does_not_leak_into_the_tag(hub: HubServer):
    repo = new_repo()
    publisher(repo).publish(round_dataset(1), stats_for(1))
    # someone else commits to main right after our round-2 push
    hub.app.after(
        "commit",
        lambda: hub.store.commit_files("dataset", repo, {"notes.txt": b"unrelated\n"}, "someone else's push"),
    )
    done = publisher(repo).publish(round_dataset(2), stats_for(2))
    api = HfApi()
    files = api.list_repo_files(repo, repo_type="dataset", revision="round-2")
    assert "notes.txt" not in files
    branches = {b.name: b.target_commit for b in api.list_repo_refs(repo, repo_type="dataset").branches}
    assert branches["pickloop-t-round-2"] == done.commit_sha  # the card went to a side branch
    assert titles(repo, "round-2")[:2] == ["pickloop t round 2: lineage card", "pickloop t round 2"]
    assert titles(repo)[0] == "someone else's push"
    assert [r.round for r in read_lineage(card_at(repo, done.revision))] == [1, 2]
    assert datasets.load_dataset(repo, revision="round-2", split="train").to_list() == round_rows(2)


def test_hub_load_missing_round_is_not_found(hub: HubServer):
    repo = new_repo()
    publisher(repo).publish(round_dataset(1), stats_for(1))
    with pytest.raises(NotFoundError, match="round-7"):
        load_round(7, PublishSettings(hub_repo=repo))


# -- local store ---------------------------------------------------------------------------------


def test_local_three_rounds_reload_and_lineage(tmp_path: Path):
    settings = PublishSettings()
    run_dir = tmp_path / "run"
    published = [
        publish_round(round_dataset(n), stats_for(n), settings, run_name="t", run_dir=run_dir)
        for n in (1, 2, 3)
    ]
    store = LocalStore(run_dir / "revisions")
    assert [p.created for p in published] == [True, True, True]
    assert sorted(store.index()["revisions"]) == ["round-1", "round-2", "round-3"]
    for n in (1, 2, 3):
        assert load_round(n, settings, run_dir=run_dir).to_list() == round_rows(n)
        # each round folder is a dataset folder `datasets` loads by itself too
        assert datasets.load_dataset(str(store.folder(n)), split="train").to_list() == round_rows(n)
    assert [r.round for r in store.lineage(3)] == [1, 2, 3]
    assert [r.round for r in store.lineage(1)] == [1]
    header = split_card((store.folder(3) / "README.md").read_text())[0]
    assert "configs:" in header and "num_examples: 5" in header


def test_local_republish_is_a_noop_and_a_crash_before_indexing_recovers(tmp_path: Path):
    settings = PublishSettings(local_dir=tmp_path / "store")
    first = publish_round(round_dataset(1), stats_for(1), settings, run_name="t")
    store = LocalStore(tmp_path / "store")
    parquet = next((store.folder(1) / "data").glob("*.parquet"))
    mtime = parquet.stat().st_mtime_ns
    again = publish_round(round_dataset(1), stats_for(1), settings, run_name="t")
    assert again.created is False and again.commit_sha == first.commit_sha
    assert parquet.stat().st_mtime_ns == mtime

    (tmp_path / "store" / "revisions.json").unlink()  # died after the folder rename, before the index
    recovered = publish_round(round_dataset(1), stats_for(1), settings, run_name="t")
    assert recovered.commit_sha == first.commit_sha and parquet.stat().st_mtime_ns == mtime
    with pytest.raises(NotFoundError):
        load_round(2, settings)


def test_hub_without_any_token_says_how_to_set_one(hub: HubServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hub token .*HF_TOKEN"):
        publisher(new_repo()).publish(round_dataset(1), stats_for(1))


def test_token_comes_from_env_then_a_0600_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    token_file = tmp_path / "hf-token"
    token_file.write_text("hf_fromfile\n")
    settings = PublishSettings(hub_repo="me/ds", hub_token_file=token_file)
    monkeypatch.setenv("HF_TOKEN", "hf_fromenv")
    assert resolve_token(settings) == "hf_fromenv"
    monkeypatch.delenv("HF_TOKEN")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        resolve_token(settings)
    assert "hf_fromfile" not in str(info.value)
    token_file.chmod(0o600)
    assert resolve_token(settings) == "hf_fromfile"


def test_stats_that_do_not_match_the_dataset_are_refused(tmp_path: Path):
    with pytest.raises(HubError, match="5 records"):
        publish_round(round_dataset(1), stats_for(3), PublishSettings(local_dir=tmp_path), run_name="t")
    assert not any(tmp_path.iterdir())


def test_lineage_shows_the_holdout_and_the_latest_evaluation() -> None:
    from loop.revisions import RoundStats, merge_lineage, read_lineage

    first = RoundStats(1, 10, holdout={"count": 3, "fraction": 0.2, "seed": 0})
    second = RoundStats(
        2,
        10,
        holdout={"count": 3, "fraction": 0.2, "seed": 0},
        evaluation={
            "headline": "evaluation e-1 (2026-12-01, 6 judgements by 2 judges)",
            "lines": ["round-1: strength +0.40"],
        },
    )
    card = merge_lineage(merge_lineage("", first, None), second, None)
    assert "3 step-1 examples held out before round 1 (`eval.holdout_fraction: 0.2`, seed 0)" in card
    assert "### Latest evaluation e-1 (2026-12-01, 6 judgements by 2 judges)" in card
    assert "- round-1: strength +0.40" in card
    assert [r.evaluation for r in read_lineage(card)] == [None, second.evaluation]  # the section still parses


EVALUATION = {
    "name": "e-after",
    "headline": "evaluation e-after (2026-12-01, 8 judgements by 2 judges)",
    "lines": ["round-2: strength +0.30", "base: strength -0.30"],
}


def test_hub_evaluation_after_the_last_round_is_a_card_only_commit_on_main(hub: HubServer):
    from loop.revisions import annotate_evaluation

    repo = new_repo()
    settings = PublishSettings(hub_repo=repo)
    assert annotate_evaluation(EVALUATION, settings, run_name="t") is None, "nothing published: nothing to do"
    for n in (1, 2):
        publish_round(round_dataset(n), stats_for(n), settings, run_name="t")
    api = HfApi()
    tags_before = {t.name: t.target_commit for t in api.list_repo_refs(repo, repo_type="dataset").tags}
    files_before = sorted(api.list_repo_files(repo, repo_type="dataset"))
    tagged = card_at(repo, "round-2")

    done = annotate_evaluation(EVALUATION, settings, run_name="t")
    assert done is not None and (done.revision, done.changed) == ("round-2", True)
    assert titles(repo)[0] == "pickloop t: evaluation e-after after round 2"
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo, repo_type="dataset").tags}
    assert tags == tags_before, "the round-N tags do not move"
    assert card_at(repo, "round-2") == tagged
    assert sorted(api.list_repo_files(repo, repo_type="dataset")) == files_before, "card only"
    main = card_at(repo, "main")
    assert split_card(main)[0] == split_card(tagged)[0], "YAML header byte for byte"
    assert "### Latest evaluation e-after (2026-12-01, 8 judgements by 2 judges)" in main
    assert "Evaluated after round 2" in main and "`round-2` tag still points at the card without it" in main
    assert "- round-2: strength +0.30" in main
    rows = read_lineage(main)
    assert [r.round for r in rows] == [1, 2] and rows[1].evaluation == {**EVALUATION, "after_round": 2}
    assert rows[0] == read_lineage(tagged)[0] and rows[1].records == read_lineage(tagged)[1].records
    assert datasets.load_dataset(repo, split="train").to_list() == round_rows(2), "main still loads"

    # a newer evaluation whose commit lands but loses its answer: the retry finds it, no second commit
    newer = {**EVALUATION, "name": "e-2"}
    hub.app.reset()
    hub.app.inject_failures("commit", 1, 504, lost=True)
    lost = annotate_evaluation(newer, settings, run_name="t")
    assert lost is not None and not lost.changed, "the retry saw the landed commit"
    assert [s for _, r, _, s in hub.requests if r == "commit"] == [504]
    assert titles(repo).count("pickloop t: evaluation e-2 after round 2") == 1
    assert read_lineage(card_at(repo, "main"))[1].evaluation["name"] == "e-2"
    annotate_evaluation(EVALUATION, settings, run_name="t")  # back to the first one

    # the same evaluation again: the card already has it, no commit
    again = annotate_evaluation(EVALUATION, settings, run_name="t")
    assert again is not None and not again.changed
    assert titles(repo).count("pickloop t: evaluation e-after after round 2") == 2  # e-after, e-2, e-after

    # the next round's publish carries its own evaluation line (no "after round" note) and all rows
    publish_round(round_dataset(3), stats_for(3), settings, run_name="t")
    card3 = card_at(repo, "round-3")
    assert [r.round for r in read_lineage(card3)] == [1, 2, 3] and "Evaluated after round" not in card3


def test_local_evaluation_after_the_last_round_updates_the_newest_card(tmp_path: Path):
    from loop.revisions import annotate_evaluation

    settings, run_dir = PublishSettings(), tmp_path / "run"
    assert annotate_evaluation(EVALUATION, settings, run_name="t", run_dir=run_dir) is None
    for n in (1, 2):
        publish_round(round_dataset(n), stats_for(n), settings, run_name="t", run_dir=run_dir)
    store = LocalStore(run_dir / "revisions")
    first_card = (store.folder(1) / "README.md").read_text()
    before = (store.folder(2) / "README.md").read_text()
    sha_before = store.index()["revisions"]["round-2"]["commit_sha"]

    done = annotate_evaluation(EVALUATION, settings, run_name="t", run_dir=run_dir)
    assert done is not None and (done.revision, done.changed) == ("round-2", True)
    card = (store.folder(2) / "README.md").read_text()
    assert "Evaluated after round 2" in card and "- base: strength -0.30" in card
    assert split_card(card)[0] == split_card(before)[0]
    assert "<!-- pickloop-lineage " in card
    assert [r.evaluation for r in store.lineage(2)] == [None, {**EVALUATION, "after_round": 2}]
    assert (store.folder(1) / "README.md").read_text() == first_card, "older revisions untouched"
    entry = store.index()["revisions"]["round-2"]
    assert entry["commit_sha"] != sha_before and entry["commit_sha"] == store._content_sha(store.folder(2))
    assert load_round(2, settings, run_dir=run_dir).to_list() == round_rows(2)

    mtime = (store.folder(2) / "README.md").stat().st_mtime_ns
    again = annotate_evaluation(EVALUATION, settings, run_name="t", run_dir=run_dir)
    assert again is not None and not again.changed
    assert (store.folder(2) / "README.md").stat().st_mtime_ns == mtime, "no second write"
    # a newer evaluation replaces the older one in place
    newer = {**EVALUATION, "name": "e-2", "headline": "evaluation e-2 (2026-12-02, 4 judgements by 1 judges)"}
    assert annotate_evaluation(newer, settings, run_name="t", run_dir=run_dir).changed
    card = (store.folder(2) / "README.md").read_text()
    assert "### Latest evaluation e-2" in card and "e-after" not in card
