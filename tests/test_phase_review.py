"""The `review` phase (`aggregate.on_conflict: review`) against the real embedded Argilla.

A round of four records is pushed by the real push phase (candidates written as generate writes
them), two labelers answer through the labeler API, and the driver runs wait, pull, aggregate and
review: two records conflict, go to a review dataset and are decided there, by one more labeler or
by an owner. Also: a re-run upserts instead of duplicating, a review killed in its wait resumes,
and the reviewer learns nothing of the original or of the labelers' choices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from argilla_setup import rankings, schema
from argilla_setup.connection import Api, Connection
from argilla_setup.users import credentials_file
from loop import annotate
from loop.config import load_config
from loop.data import load_examples
from loop.driver import Driver
from loop.phases.aggregate import Decision, RecordCandidates, Response, read_decisions
from loop.phases.generate import Candidate, SampleSpec, TurnCandidates, write_candidates
from loop.phases.publish import preference_data
from loop.phases.review import review_decision
from loop.state import RunState

MODEL_DIR = "secret-model-x"
VISIBLE_META = {schema.META_ROUND, schema.META_SOURCE, schema.META_EXAMPLE_ID, schema.META_TURN}
QUESTIONS = {f"q{i}": f"What is thing {i}?" for i in range(4)}
CONFLICTED = ("q0", "q1")  # the labelers' first places differ; q2, q3 they agree on


@dataclass
class Round:
    config: Path
    driver: Driver
    plan: dict[str, annotate.PlannedRecord]  # example id -> planned record
    labelers: dict[str, Api]
    owner: Api
    reviewer: str | None


def _config(tmp_path: Path, api_url: str, **review) -> Path:
    tag = uuid.uuid4().hex[:6]
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": k, "question": q, "answer": f"original answer {k}"}) + "\n"
            for k, q in QUESTIONS.items()
        )
    )
    cfg = {
        "run": {"name": f"rv-{tag}", "dir": str(tmp_path / "run"), "seed": 0},
        "data": {"path": str(data)},
        "model": {"name_or_path": str(tmp_path / MODEL_DIR)},
        "generate": {"k": 2},
        "argilla": {
            "api_url": api_url,
            "workspace": f"ws-{tag}",
            "labelers": [f"lab-a-{tag}", f"lab-b-{tag}"],
            "min_submitted": 2,
        },
        "wait": {"poll_interval_s": 0.2, "webhooks": True, "timeout_s": 60},
        "aggregate": {"on_conflict": "review"},
        "review": review,
    }
    path = tmp_path / "pickloop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _api(api_url: str, name: str) -> Api:
    return Api(Connection(api_url, json.loads(credentials_file(name).read_text())["api_key"]))


def _order(rec: annotate.PlannedRecord, *first: str) -> list[str]:
    """Slots best first: `original`, `m1`, `m2` name the original and the two candidates."""
    by_text = {c.text: slot for slot, c in rec.slots.items()}
    slot = {"original": rec.original_slot, "m1": by_text[f"model answer 1 {rec.example_id}"]}
    slot["m2"] = by_text[f"model answer 2 {rec.example_id}"]
    return [slot[f] for f in first]


def _answer(api: Api, dataset_id: str, orders: dict[str, list[str]]) -> None:
    """Submit a ranking per record (by example id) as the labeler UI does."""
    records, _ = rankings.pending_records(api, dataset_id, limit=50)
    items = [
        (r["id"], rankings.response_values(orders[r["metadata"][schema.META_EXAMPLE_ID]]), "submitted")
        for r in records
        if r["metadata"][schema.META_EXAMPLE_ID] in orders
    ]
    rankings.submit_responses(api, items)


def _round(tmp_path: Path, argilla_stack, monkeypatch: pytest.MonkeyPatch, **review) -> Round:
    """Round 1 labeled and aggregated: q0, q1 conflicted (first places differ), q2, q3 agreed."""
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_stack.api_key)
    config = _config(tmp_path, argilla_stack.api_url, **review)
    driver = Driver(load_config(config), progress=False)
    paths = driver.paths.round(1)
    examples = driver.context(1).examples()
    spec = [SampleSpec("sample", 1.0, None, 7)]
    write_candidates(
        [
            TurnCandidates(
                ex.id,
                0,
                1,
                ex.messages[:1],
                ex.messages[1]["content"],
                -1.0,
                [Candidate(f"model answer {j} {ex.id}", 1, -0.5 * j, False, spec) for j in (1, 2)],
            )
            for ex in examples
        ],
        paths.candidates,
    )
    state = RunState.load(driver.run_dir)
    for phase in ("train", "regenerate", "generate", "score"):
        state.mark_done(1, phase, f"h-{phase}", 0.0, {})
    driver.run_phase(1, "push")
    plan = {r.example_id: r for r in annotate.read_plan(paths.dir)}
    cfg = driver.config
    labelers = {name: _api(argilla_stack.api_url, name) for name in cfg.argilla.labelers}
    a, b = labelers.values()
    dataset_id = annotate.read_push(paths.dir).dataset_id
    _answer(a, dataset_id, {k: _order(r, "original", "m1", "m2") for k, r in plan.items()})
    b_orders = {k: _order(r, "m1", "m2", "original") for k, r in plan.items() if k in CONFLICTED}
    b_orders |= {k: _order(r, "original", "m1", "m2") for k, r in plan.items() if k not in CONFLICTED}
    _answer(b, dataset_id, b_orders)
    for phase in ("wait", "pull", "aggregate"):
        driver.run_phase(1, phase)
    owner = Api(Connection(argilla_stack.api_url, argilla_stack.api_key))
    return Round(config, driver, plan, labelers, owner, (cfg.review.reviewers or [None])[0])


def _review_dataset(r: Round) -> dict:
    cfg = r.driver.config
    name = f"{schema.dataset_name(cfg.run.name, 1)}-review"
    return r.owner.dataset_by_name(name, cfg.review.workspace or f"{cfg.argilla.workspace}-review")


def _pushed(r: Round) -> str | None:
    """The review dataset's id once it is in Argilla with both records, else None."""
    try:
        ds = _review_dataset(r)
    except Exception:  # not created yet
        return None
    if ds.get("status") != "ready":
        return None
    total = r.owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1})["total"]
    return ds["id"] if total == len(CONFLICTED) else None


def _when_pushed(r: Round, act) -> tuple[threading.Thread, dict]:
    """Run `act(dataset id)` in the background as soon as the review dataset holds its records (as the
    phase waits); an exception it raises lands in the returned dict under `error`."""
    out: dict = {}

    def go() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ds_id = _pushed(r)
            if ds_id:
                try:
                    act(ds_id)
                except BaseException as exc:  # reported by the test
                    out["error"] = exc
                return
            time.sleep(0.2)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


def _answer_when_pushed(r: Round, api_of, orders: dict[str, list[str]]) -> threading.Thread:
    return _when_pushed(r, lambda ds_id: _answer(api_of(), ds_id, orders))[0]


def _decisions(r: Round) -> dict[str, Decision]:
    return {d.example_id: d for d in read_decisions(r.driver.state().round_decisions(1))}


@pytest.mark.argilla
def test_one_more_labeler_decides_the_conflicts_in_the_same_round(
    tmp_path: Path, argilla_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviewer = f"rev-{uuid.uuid4().hex[:6]}"
    r = _round(tmp_path, argilla_stack, monkeypatch, reviewers=[reviewer])
    agg = {d.example_id: d for d in read_decisions(r.driver.paths.round(1).decisions)}
    assert [k for k, d in agg.items() if d.choice == "conflict_review"] == list(CONFLICTED)
    # q0: the reviewer's vote (original first) outweighs; q1: candidate 1 first wins.
    orders = {
        "q0": _order(r.plan["q0"], "original", "m2", "m1"),
        "q1": _order(r.plan["q1"], "m1", "original", "m2"),
    }
    t = _answer_when_pushed(r, lambda: _api(argilla_stack.api_url, reviewer), orders)
    out = r.driver.run_phase(1, "review")
    t.join(5)
    s = out.summary
    assert (s.conflicts, s.queued, s.reviewed, s.changed, s.by, s.rewritten) == (
        2,
        2,
        2,
        1,
        {"labeler": 2},
        True,
    )
    assert s.reviewers == [reviewer] and s.reason == "completed"
    ds = _review_dataset(r)
    records = r.owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 50})["items"]
    assert sorted(x["metadata"][schema.META_EXAMPLE_ID] for x in records) == list(CONFLICTED), (
        "exactly the conflicts"
    )
    assert {x["external_id"] for x in records} == {r.plan[k].external_id for k in CONFLICTED}
    d = _decisions(r)
    assert (d["q0"].choice, d["q0"].answer, d["q0"].reviewed_by, d["q0"].annotator_count) == (
        "original",
        "original answer q0",
        "labeler",
        3,
    )
    assert (d["q1"].choice, d["q1"].answer, d["q1"].reviewed_by) == ("model", "model answer 1 q1", "labeler")
    # Publish's preference pairs count the reviewer's vote: q1's published answer is chosen over the rest.
    prefs = preference_data(r.driver.context(1))
    q1 = [p for p in prefs.pairs if p["example_id"] == "q1"]
    assert {p["chosen"][0]["content"] for p in q1 if p["margin"] == max(x["margin"] for x in q1)} == {
        "model answer 1 q1"
    }
    assert {p["reviewed_by"] for p in q1} == {"labeler"} and {p["annotators"] for p in q1} == {3}
    assert any(reviewer in p["chosen_by"] for p in q1)
    assert d["q1"].conflict and d["q1"].reason == agg["q1"].reason, "the conflict stays on record"
    assert d["q2"].choice == "original" and d["q2"].reviewed_by is None
    # The round's dataset is the reviewed one: publish and round 2 read it.
    assert r.driver.state().round_output(1).name == "reviewed.parquet"
    rows = {ex.id: ex for ex in load_examples(r.driver.state().round_output(1))}
    assert rows["q1"].messages[1]["content"] == "model answer 1 q1"
    assert rows["q1"].extra["reviewed_by"] == "labeler" and rows["q2"].extra["reviewed_by"] is None
    assert load_examples(r.driver.paths.round(1).output)[1].messages[1]["content"] == "original answer q1", (
        "aggregate's own output is left as it was"
    )
    assert r.driver.context(2).examples()[1].messages[1]["content"] == "model answer 1 q1"
    # Re-running the phase upserts the same records: no duplicates, the same decisions.
    r.driver.redo(1, "review")
    again = r.driver.run_phase(1, "review").summary
    assert (again.queued, again.reviewed, again.changed) == (2, 2, 1)
    assert r.owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1})["total"] == 2
    assert _decisions(r) == d
    # A record no longer in conflict (aggregate redone with other settings) leaves the review dataset.
    stale = annotate.record_body(r.plan["q2"], round_n=1, multi_turn=False, slots=3, suggest=False)
    rankings.upsert_records(r.owner, ds["id"], [stale])
    r.driver.redo(1, "review")
    assert r.driver.run_phase(1, "review").summary.queued == 2
    ids = {x["external_id"] for x in r.owner.get(f"/api/v1/datasets/{ds['id']}/records")["items"]}
    assert ids == {r.plan[k].external_id for k in CONFLICTED}


@pytest.mark.argilla
def test_without_reviewers_the_owner_reviews_and_the_owners_top_choice_is_final(
    tmp_path: Path, argilla_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both labelers answered every record (min_submitted 2): nobody is left to be one more labeler.
    r = _round(tmp_path, argilla_stack, monkeypatch)
    orders = {
        "q0": _order(r.plan["q0"], "m2", "original", "m1"),
        "q1": _order(r.plan["q1"], "original", "m1", "m2"),
    }
    t = _answer_when_pushed(r, lambda: r.owner, orders)
    s = r.driver.run_phase(1, "review").summary
    t.join(5)
    assert s.reviewers == [r.owner.me()["username"]] and s.by == {"owner": 2}
    d = _decisions(r)
    # q0: the labelers' Borda favours candidate 1, the owner's first place (candidate 2) is final.
    assert (d["q0"].choice, d["q0"].answer, d["q0"].reviewed_by) == ("model", "model answer 2 q0", "owner")
    assert (d["q1"].choice, d["q1"].reviewed_by, d["q1"].changed) == ("original", "owner", False)
    # Publish's preference pairs follow the owner: their ranking alone, the published answer on top.
    owner = r.owner.me()["username"]
    prefs = preference_data(r.driver.context(1))
    q0 = [p for p in prefs.pairs if p["example_id"] == "q0"]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in q0] == [
        ("model answer 2 q0", "original answer q0"),
        ("model answer 2 q0", "model answer 1 q0"),
        ("original answer q0", "model answer 1 q0"),
    ]
    assert {(tuple(p["chosen_by"]), p["annotators"], p["reviewed_by"]) for p in q0} == {
        ((owner,), 1, "owner")
    }
    assert {p["reviewed_by"] for p in prefs.pairs if p["example_id"] in ("q2", "q3")} == {None}
    assert preference_data(r.driver.context(1)) == prefs


@pytest.mark.argilla
def test_a_review_killed_in_its_wait_resumes_without_duplicates(
    tmp_path: Path, argilla_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviewer = f"rev-{uuid.uuid4().hex[:6]}"
    r = _round(tmp_path, argilla_stack, monkeypatch, reviewers=[reviewer])
    code = (
        "import sys\nfrom loop.config import load_config\nfrom loop.driver import Driver\n"
        "Driver(load_config(sys.argv[1]), progress=False).run_phase(1, 'review')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen([sys.executable, "-c", code, str(r.config)], env=env, start_new_session=True)
    review_json = r.driver.paths.round(1).review_push
    try:
        deadline = time.monotonic() + 120
        while not review_json.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert review_json.exists(), "the review dataset was pushed"
        time.sleep(1.0)  # into the wait (webhook registered, polling)
        assert proc.poll() is None, "still waiting: nobody reviewed yet"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not r.driver.state().is_done(1, "review")
    orders = {k: _order(r.plan[k], "m2", "m1", "original") for k in CONFLICTED}
    _answer(_api(argilla_stack.api_url, reviewer), _review_dataset(r)["id"], orders)
    s = r.driver.run_phase(1, "review").summary
    assert (s.queued, s.reviewed, s.reason) == (2, 2, "completed")
    ds = _review_dataset(r)
    assert r.owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1})["total"] == 2
    tag = f"pickloop:{r.driver.config.run.name}:round-1:review"
    assert not [h for h in r.owner.get("/api/v1/webhooks")["items"] if h.get("description") == tag], (
        "the killed run's webhook is gone"
    )
    # a:[o,m1,m2] b:[m1,m2,o] reviewer:[m2,m1,o] -> Borda o 2, m1 4, m2 3: candidate 1.
    assert {k: _decisions(r)[k].answer for k in CONFLICTED} == {k: f"model answer 1 {k}" for k in CONFLICTED}


@pytest.mark.argilla
def test_a_simulated_reviewer_answers_the_review_dataset(
    tmp_path: Path, argilla_stack, pickloop_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's simulated labelers, given the reviewer's name, find the review dataset (the only
    one its account sees) and answer it like the round's: `pickloop demo` with review runs unattended."""
    from loop.demo.simulate import LabelerStyle, SimulatedLabelers

    reviewer = f"sim-reviewer-{uuid.uuid4().hex[:6]}"
    r = _round(tmp_path, argilla_stack, monkeypatch, reviewers=[reviewer])
    refs = {k: f"model answer 2 {k}" for k in QUESTIONS}
    sim = SimulatedLabelers(
        argilla_stack.api_url,
        pickloop_home / "argilla",
        [reviewer],
        refs,
        run=r.driver.config.run.name,
        workspace=r.driver.config.argilla.workspace,
        style=LabelerStyle(noise=0.0, discard_rate=0.0, edit_rate=0.0),
        interval=0.2,
    )
    sim.start()
    try:
        s = r.driver.run_phase(1, "review").summary
    finally:
        sim.stop()
    assert (s.reviewed, s.by, sim.stats[reviewer].submitted) == (2, {"labeler": 2}, 2)
    # a: original first, b: candidate 1 first, the reviewer: candidate 2 (its reference) first, then
    # candidate 1 (closer to it than the original): Borda o 2, m1 4, m2 3.
    assert {k: _decisions(r)[k].answer for k in CONFLICTED} == {k: f"model answer 1 {k}" for k in CONFLICTED}


def _responses(obj) -> list[dict]:
    if isinstance(obj, dict):
        found = [obj] if "user_id" in obj and "values" in obj else []
        return found + [x for v in obj.values() for x in _responses(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _responses(v)]
    return []


@pytest.mark.argilla
def test_the_reviewer_sees_neither_the_original_nor_the_labelers_choices(
    tmp_path: Path, argilla_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviewer = f"rev-{uuid.uuid4().hex[:6]}"
    r = _round(tmp_path, argilla_stack, monkeypatch, reviewers=[reviewer])
    orders = {k: _order(r.plan[k], "m1", "original", "m2") for k in CONFLICTED}
    seen: dict[str, str] = {}

    def walk() -> None:
        """Every annotator route that can show records, responses or metadata, before answering."""
        api = _api(argilla_stack.api_url, reviewer)
        ds = _review_dataset(r)
        try:
            check(api, ds)
        finally:
            _answer(api, ds["id"], orders)  # the phase's wait ends either way

    def check(api: Api, ds: dict) -> None:
        rec = api.post(f"/api/v1/me/datasets/{ds['id']}/records/search", json={"query": {}})["items"][0][
            "record"
        ]
        round_ds = annotate.read_push(r.driver.paths.round(1).dir).dataset_id
        include = [("include", "responses"), ("include", "suggestions"), ("include", "vectors")]
        calls = [
            ("GET", "/api/v1/me/datasets", None, []),
            ("GET", f"/api/v1/datasets/{ds['id']}", None, []),
            ("GET", f"/api/v1/datasets/{ds['id']}/fields", None, []),
            ("GET", f"/api/v1/datasets/{ds['id']}/questions", None, []),
            ("GET", f"/api/v1/me/datasets/{ds['id']}/metadata-properties", None, []),
            ("GET", f"/api/v1/datasets/{ds['id']}/progress", None, []),
            ("GET", f"/api/v1/datasets/{ds['id']}/users/progress", None, []),
            ("POST", f"/api/v1/me/datasets/{ds['id']}/records/search", {"query": {}}, include),
            ("GET", f"/api/v1/records/{rec['id']}", None, []),
            ("GET", f"/api/v1/records/{rec['id']}/suggestions", None, []),
            ("GET", f"/api/v1/datasets/{round_ds}", None, []),
            ("POST", f"/api/v1/me/datasets/{round_ds}/records/search", {"query": {}}, include),
            ("GET", f"/api/v1/datasets/{ds['id']}/records", None, include),
        ]
        with httpx.Client(
            base_url=argilla_stack.api_url, headers={"X-Argilla-Api-Key": api.conn.api_key}
        ) as http:
            me = http.get("/api/v1/me").json()["id"]
            for method, path, body, params in calls:
                resp = http.request(method, path, json=body, params=params)
                seen[f"{method} {path}"] = str(resp.status_code)
                text = resp.text
                for word in (MODEL_DIR, "original_slot", *r.labelers, "conflict", "top_choices_differ"):
                    assert word not in text, (method, path, word)
                if resp.headers.get("content-type", "").startswith("application/json"):
                    assert all(x["user_id"] == me for x in _responses(resp.json())), (method, path)
                    for item in resp.json().get("items", []) if isinstance(resp.json(), dict) else []:
                        record = item.get("record", item)
                        if isinstance(record, dict) and "metadata" in record and "fields" in record:
                            assert set(record["metadata"]) <= VISIBLE_META, (method, path)
                            assert not record.get("suggestions"), "no suggestion points anywhere"

    t, out = _when_pushed(r, lambda ds_id: walk())
    r.driver.run_phase(1, "review")
    t.join(5)
    assert "error" not in out, out
    ds_id = _review_dataset(r)["id"]
    round_ds = annotate.read_push(r.driver.paths.round(1).dir).dataset_id
    assert seen[f"POST /api/v1/me/datasets/{ds_id}/records/search"] == "200", "the check is not vacuous"
    assert seen[f"GET /api/v1/datasets/{round_ds}"] in ("403", "404"), (
        "the reviewer is not in the round's workspace"
    )
    assert seen[f"GET /api/v1/datasets/{ds_id}/records"] == "403", "nor may read everyone's responses"


def test_review_decision_rules() -> None:
    rec = RecordCandidates("r", "e", 1, {"a": "A", "b": "B", "c": "C"}, "A", "a")
    earlier = [Response("x", (("a", 1), ("b", 2), ("c", 3))), Response("y", (("b", 1), ("c", 2), ("a", 3)))]
    base = Decision(
        "r",
        "e",
        1,
        "A",
        "conflict_review",
        "a",
        None,
        2,
        0.1,
        False,
        {},
        reason="top_choices_differ",
        conflict=True,
    )
    assert review_decision(rec, earlier, [], {"boss"}, base) is base, "nobody reviewed: unchanged"
    # One more labeler: a third vote. x: a2 b1 c0, y: b2 c1 a0, z: c2 a1 b0 -> a 3, b 3, c 3: the current answer.
    d = review_decision(rec, earlier, [Response("z", (("c", 1), ("a", 2), ("b", 3)))], {"boss"}, base)
    assert (d.choice, d.answer, d.reviewed_by, d.annotator_count, d.conflict) == (
        "original",
        "A",
        "labeler",
        3,
        True,
    )
    # A labeler who already ranked it takes a second look: the new ranking replaces theirs.
    d = review_decision(rec, earlier, [Response("x", (("b", 1), ("a", 2), ("c", 3)))], {"boss"}, base)
    assert (d.choice, d.answer, d.annotator_count) == ("model", "B", 2)
    # An owner's first place is final, whatever the labelers said.
    d = review_decision(rec, earlier, [Response("boss", (("c", 1), ("a", 2), ("b", 3)))], {"boss"}, base)
    assert (d.choice, d.answer, d.reviewed_by, d.reason) == ("model", "C", "owner", "top_choices_differ")
    d = review_decision(rec, earlier, [Response("boss", (("a", 1),), "A better answer.")], {"boss"}, base)
    assert (d.choice, d.answer) == ("edited", "A better answer.")


def test_no_conflicts_is_a_no_op_without_argilla(tmp_path: Path) -> None:
    """Nothing queued: no dataset, no connection (the Argilla URL here refuses), aggregate's output stays."""
    from loop.context import RoundContext
    from loop.paths import RunPaths
    from loop.phases import review

    config = _config(tmp_path, "http://127.0.0.1:9")
    cfg = load_config(config)
    ctx = RoundContext(cfg, 1, RunPaths(cfg.run_dir()), progress=False)
    ctx.paths.dir.mkdir(parents=True)
    plain = Decision("r", "e", 1, "A", "model", "b", None, 2, 0.9, False, {})
    ctx.paths.decisions.write_text(json.dumps(plain.__dict__) + "\n")
    s = review.run(ctx)
    assert (s.queued, s.rewritten, s.reason, s.dataset) == (0, False, "no_conflicts", None)
    cfg.aggregate.on_conflict = "keep_current"
    kept = Decision("r", "e", 1, "A", "conflict_kept", "a", None, 2, 0.1, False, {}, conflict=True)
    ctx.paths.decisions.write_text(json.dumps(kept.__dict__) + "\n")
    s = review.run(ctx)
    assert (s.conflicts, s.queued, s.reason) == (1, 0, "not_review")
    assert not ctx.paths.review_push.exists()


def test_review_settings_leave_the_aggregate_hash_alone(tmp_path: Path) -> None:
    """Runs aggregated before the review phase existed resume: its settings are a section of their
    own, so aggregate's hashed keys are the ones it had (a new key there would refuse the round)."""
    from loop.phases import PHASES

    driver = Driver(load_config(_config(tmp_path, "http://127.0.0.1:9")), progress=False)
    assert set(driver.key_hashes(1, PHASES["aggregate"])) == {
        "run.seed",
        "aggregate.method",
        "aggregate.on_conflict",
        "aggregate.conflict_below",
        "aggregate.conflict_top_choice",
    }
    assert set(driver.key_hashes(1, PHASES["review"])) == {"run.seed", "review.reviewers", "review.workspace"}
