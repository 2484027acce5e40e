"""The wait step against the real embedded Argilla: webhook wake-up, polling, fraction, timeout."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from argilla_setup import rankings, schema, users
from argilla_setup.connection import Api, Connection, client
from loop.config import WaitSettings
from loop.console import StatusLine
from loop.errors import AuthError, WaitTimeout
from loop.phases.wait import (
    Progress,
    Summary,
    UserProgress,
    dataset_progress,
    describe,
    live_progress,
    summary_progress,
    wait_for_completion,
)


@pytest.fixture
def round_dataset(argilla_stack, request):
    """A 3-record round dataset in a fresh workspace, plus an annotator's API client
    (`@pytest.mark.parametrize("round_dataset", [N], indirect=True)`: min_submitted N)."""
    import argilla as rg

    options = schema.SchemaOptions(min_submitted=getattr(request, "param", 1))

    tag = uuid.uuid4().hex[:6]
    conn = Connection(argilla_stack.api_url, argilla_stack.api_key)
    owner = Api(conn)
    ws = f"wait-{tag}"
    (user,) = users.add_users(owner, [f"w-{tag}"], workspace=ws, create_workspace=True)
    sdk = client(conn)
    ds = rg.Dataset(
        name=f"wait-{tag}",
        workspace=ws,
        settings=schema.round_settings(1, 2, options, client=sdk),
        client=sdk,
    )
    ds.create()
    ds.records.log(
        [
            {
                "question": f"q{i}",
                "candidate_1": f"a{i}",
                "candidate_2": f"b{i}",
                "round": 1,
                "example_id": f"e{i}",
                "turn": 0,
            }
            for i in range(3)
        ]
    )
    creds = __import__("json").loads(user.credentials_file.read_text())
    annotator = Api(Connection(argilla_stack.api_url, creds["api_key"]))
    yield owner, str(ds.id), annotator
    owner.close()
    annotator.close()


def _submit_all(annotator: Api, dataset_id: str, delay: float, limit: int | None = None) -> threading.Thread:
    def work() -> None:
        time.sleep(delay)
        records, _ = rankings.pending_records(annotator, dataset_id)
        for rec in records[:limit]:
            rankings.submit_response(
                annotator, rec["id"], rankings.response_values(["candidate_1", "candidate_2"])
            )

    t = threading.Thread(target=work)
    t.start()
    return t


def test_webhook_wakes_the_wait_long_before_the_next_poll(round_dataset) -> None:
    owner, dataset_id, annotator = round_dataset
    assert dataset_progress(owner, dataset_id).completed == 0
    worker = _submit_all(annotator, dataset_id, delay=1.0)
    started = time.monotonic()
    result = wait_for_completion(
        owner,
        dataset_id,
        WaitSettings(poll_interval_s=60, webhooks=True, timeout_s=50),
        tag=f"t-{dataset_id}",
    )
    worker.join()
    assert result.reason == "completed" and result.progress.completed == 3
    assert result.webhook_events >= 1
    # Polling every 60 s would have taken a minute; the webhook woke it within seconds.
    assert time.monotonic() - started < 30
    # The webhook was removed afterwards.
    hooks = owner.get("/api/v1/webhooks")["items"]
    assert not [h for h in hooks if h.get("description") == f"t-{dataset_id}"]


def test_polling_fraction_and_timeout(round_dataset) -> None:
    owner, dataset_id, annotator = round_dataset
    _submit_all(annotator, dataset_id, delay=0.0, limit=2).join()
    with pytest.raises(WaitTimeout, match=r"completed 2/3 records before the 1s timeout"):
        wait_for_completion(
            owner, dataset_id, WaitSettings(poll_interval_s=0.2, webhooks=False, timeout_s=1), tag="x"
        )
    timed_out = wait_for_completion(
        owner,
        dataset_id,
        WaitSettings(poll_interval_s=0.2, webhooks=False, timeout_s=1, on_timeout="proceed"),
        tag="x",
    )
    assert timed_out.reason == "timeout" and timed_out.progress.completed == 2
    enough = wait_for_completion(
        owner,
        dataset_id,
        WaitSettings(poll_interval_s=0.2, webhooks=False, min_completed_fraction=0.6),
        tag="x",
    )
    assert enough.reason == "fraction" and enough.polls == 1
    assert [u.submitted for u in enough.progress.users] == [2]


def test_a_record_every_labeler_answered_is_settled_even_when_discarded(round_dataset) -> None:
    owner, dataset_id, annotator = round_dataset
    _submit_all(annotator, dataset_id, delay=0.0, limit=2).join()
    (last,), _ = rankings.pending_records(annotator, dataset_id)
    rankings.submit_response(annotator, last["id"], None, status="discarded")
    name = annotator.me()["username"]
    # Without knowing the labelers, a discarded record is just pending: the wait times out.
    with pytest.raises(WaitTimeout):
        wait_for_completion(
            owner, dataset_id, WaitSettings(poll_interval_s=0.2, webhooks=False, timeout_s=1), tag="x"
        )
    result = wait_for_completion(
        owner,
        dataset_id,
        WaitSettings(poll_interval_s=0.2, webhooks=False, timeout_s=10),
        tag="x",
        labelers=[name],
    )
    assert result.reason == "settled"
    assert (result.progress.completed, result.progress.settled, result.progress.total) == (2, 1, 3)


@contextlib.contextmanager
def _scripted_argilla(answers: list[tuple[int, dict]]) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server answering GETs with the next (status, JSON body) of `answers`; yields its
    URL and the paths it was asked for."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Scripted(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            seen.append(self.path)
            status, body = answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: object) -> None:
            return

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_rejected_key_stops_the_wait_at_once() -> None:
    """A 401 on the progress check is no passing failure: waiting longer cannot fix the key."""
    started = time.monotonic()
    refused = [(401, {"detail": "Could not validate credentials"})]
    with (
        _scripted_argilla(refused) as (url, seen),
        Api(Connection(url, "revoked")) as api,
        pytest.raises(AuthError, match="HTTP 401"),
    ):
        wait_for_completion(
            api, "ds-1", WaitSettings(poll_interval_s=0.1, webhooks=False, timeout_s=10), tag="x"
        )
    assert time.monotonic() - started < 5
    assert seen == ["/api/v1/datasets/ds-1/progress"]


def test_a_busy_server_is_waited_out() -> None:
    done = {"total": 2, "completed": 2, "pending": 0}
    users = {"users": [{"username": "ann", "completed": {"submitted": 2}, "pending": {}}]}
    answers = [(503, {"detail": "busy"}), (200, done), (200, users)]
    with _scripted_argilla(answers) as (url, seen), Api(Connection(url, "k"), max_tries=1) as api:
        result = wait_for_completion(
            api, "ds-1", WaitSettings(poll_interval_s=0.1, webhooks=False, timeout_s=10), tag="x"
        )
    assert result.reason == "completed" and result.polls == 1
    assert [u.submitted for u in result.progress.users] == [2]
    assert seen == ["/api/v1/datasets/ds-1/progress"] * 2 + ["/api/v1/datasets/ds-1/users/progress"]


# --------------------------------------------------------------------------- the wait line


def test_the_wait_line_names_records_labelers_and_what_is_left() -> None:
    users = (UserProgress("alice", 80, 0, 1), UserProgress("bob", 75, 2, 0))
    p = Progress(total=175, completed=132, pending=43, users=users, settled=1, one_short=2)
    assert (
        describe(p) == "132/175 records complete · alice 80 · bob 75 · 2 need one more labeler · 1 discarded"
    )
    assert describe(p, users=False) == "132/175 records complete · 2 need one more labeler · 1 discarded"
    assert (
        describe(Progress(3, 0, 3, one_short=1), users=False)
        == "0/3 records complete · 1 needs one more labeler"
    )


def test_a_finished_wait_has_nothing_pending() -> None:
    summary = Summary(reason="fraction", completed=4, total=6, settled=1, labelers={"bob": 5, "alice": 4})
    p = summary_progress(summary)
    assert (p.pending, [u.username for u in p.users]) == (1, ["alice", "bob"])
    assert (
        describe(p, final=True) == "4/6 records complete · alice 4 · bob 5 · 1 discarded · 1 left unlabeled"
    )


class _Stream(list):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def write(self, text: str) -> None:
        self.append(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_the_status_line_is_rewritten_in_place_on_a_terminal() -> None:
    out = _Stream(tty=True)
    line = StatusLine(out)
    for n, text in enumerate(
        ["1/3 records complete", "1/3 records complete", "2/3 records complete", "done"]
    ):
        line.update(text, now=float(n))
    line.close()
    assert out == ["\r1/3 records complete", "\r2/3 records complete", "\rdone                ", "\n"]


def test_the_status_line_prints_changes_at_most_every_interval_elsewhere() -> None:
    out = _Stream(tty=False)
    line = StatusLine(out, min_interval_s=10)
    line.update("0/3", now=0)
    line.update("0/3", now=11)  # unchanged: nothing
    line.update("1/3", now=12)
    line.update("2/3", now=13)  # too soon: kept for later
    line.update("2/3", now=30)  # the kept change, once
    line.update("3/3", now=31)  # too soon: printed by close()
    line.close()
    assert "".join(out).splitlines() == ["0/3", "1/3", "2/3", "3/3"]


@pytest.mark.parametrize("round_dataset", [2], indirect=True)
def test_live_progress_lists_every_labeler_and_records_one_answer_short(round_dataset) -> None:
    owner, dataset_id, annotator = round_dataset
    name = annotator.me()["username"]
    assert live_progress(owner, dataset_id, [name, "nobody-yet"], 2).users == (
        UserProgress(name, 0, 0, 0),
        UserProgress("nobody-yet", 0, 0, 0),
    )
    _submit_all(annotator, dataset_id, delay=0.0, limit=2).join()
    p = live_progress(owner, dataset_id, [name, "nobody-yet"], 2)
    assert (p.completed, p.one_short, p.settled) == (0, 2, 0)
    assert describe(p) == f"0/3 records complete · {name} 2 · nobody-yet 0 · 2 need one more labeler"


def test_a_round_with_nothing_pushed_does_not_wait(tmp_path) -> None:
    """The selection can ask nothing (every answer verified): the wait returns at once, asking no
    server (this one is closed), instead of waiting for records that will never exist."""
    import socket

    import yaml

    from loop import phases
    from loop.config import load_config
    from loop.context import RoundContext
    from loop.paths import RunPaths

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "run": {"name": "empty", "dir": str(tmp_path / "run")},
                "data": {"path": "data.jsonl"},
                "model": {"name_or_path": "m"},
                "argilla": {"api_url": f"http://127.0.0.1:{port}"},
            }
        )
    )
    cfg = load_config(path)
    paths = RunPaths(cfg.run_dir())
    paths.round(1).dir.mkdir(parents=True)
    push = {"dataset_id": "d", "dataset_name": "empty-round-1", "workspace": "w", "records": 0, "url": "u"}
    (paths.round(1).dir / "push.json").write_text(json.dumps({**push, "created_dataset": True}))
    said: list[str] = []
    ctx = RoundContext(cfg, 1, paths, report=said.append, progress=False)
    summary = phases.PHASES["wait"].load().run(ctx)
    assert (summary.reason, summary.total, summary.completed) == ("nothing_to_label", 0, 0)
    assert said == ["round 1: nothing to label (no record was pushed)"]


def _record_paths(api: Api) -> list[str]:
    """The path of every request `api` sends from now on (an httpx event hook on its real client)."""
    seen: list[str] = []
    api._http.event_hooks["request"].append(lambda request: seen.append(request.url.path))
    return seen


@pytest.mark.parametrize("round_dataset", [2], indirect=True)
def test_a_poll_counts_and_never_lists_the_records(round_dataset) -> None:
    """Each poll asks the two progress endpoints only, and says what listing every record said."""
    from loop.phases.wait import Poller, tally_pending

    owner, dataset_id, annotator = round_dataset
    name = annotator.me()["username"]
    _submit_all(annotator, dataset_id, delay=0.0, limit=2).join()
    listed = tally_pending(owner, dataset_id, [name], 2)
    seen = _record_paths(owner)
    poll = Poller(owner, dataset_id, [name], 2, 1.0)
    p = poll()
    # The only labeler answered both: settled, not one short (the listing counts a record once).
    assert (p.one_short, p.settled) == (listed.one_short, listed.settled) == (0, 2)
    assert live_progress(owner, dataset_id, [name], 2) == p
    assert (
        seen
        == [f"/api/v1/datasets/{dataset_id}/progress", f"/api/v1/datasets/{dataset_id}/users/progress"] * 2
    )
    assert poll.tallies == 0


def test_a_settled_wait_is_decided_from_counts(round_dataset) -> None:
    from loop.phases.wait import tally_pending

    owner, dataset_id, annotator = round_dataset
    _submit_all(annotator, dataset_id, delay=0.0, limit=2).join()
    (last,), _ = rankings.pending_records(annotator, dataset_id)
    rankings.submit_response(annotator, last["id"], None, status="discarded")
    name = annotator.me()["username"]
    seen = _record_paths(owner)
    result = wait_for_completion(
        owner,
        dataset_id,
        WaitSettings(poll_interval_s=0.2, webhooks=False, timeout_s=10),
        tag="x",
        labelers=[name],
    )
    asked = list(seen)
    assert result.reason == "settled"
    assert result.progress.settled == 1 == tally_pending(owner, dataset_id, [name], 1).settled
    assert not [path for path in asked if "records" in path or "rankings" in path]


def test_counts_bound_the_settled_records_and_tell_them_when_they_can() -> None:
    from loop.phases.wait import count_pending

    def progress(answered: dict[str, int], pending: int = 10, submitted: int = 0) -> Progress:
        users = tuple(UserProgress(n, 0, 0, 0, a) for n, a in answered.items())
        return Progress(20, 20 - pending, pending, users, pending_submitted=submitted)

    one = count_pending(progress({"ann": 4}), ["ann"], 1)
    assert (one.settled_low, one.settled_high, one.one_short_low, one.exact) == (4, 4, 0, True)
    # Two labelers, each answered some pending records: between 10-(6+3)=1 and min(4, 7)=4 answered
    # by both; 5 records have one submitted response, of which at most 4 are settled.
    two = count_pending(progress({"ann": 4, "bob": 7}, submitted=5), ["ann", "bob"], 2)
    assert (two.settled_low, two.settled_high, two.one_short_low, two.one_short_high) == (1, 4, 1, 5)
    assert not two.exact
    nobody = count_pending(progress({"ann": 4}, submitted=4), ["ann", "bob"], 2)
    assert (nobody.settled_high, nobody.one_short_low, nobody.exact) == (0, 4, True)
    done = count_pending(progress({"ann": 10, "bob": 10}), ["ann", "bob", "cy"], 3)
    assert (done.settled_low, done.settled_high, done.exact) == (0, 0, False)


def test_users_progress_reads_an_index_not_every_record(argilla_stack) -> None:
    """The embedded database has pickloop's covering index, and SQLite answers the users-progress
    query (built as argilla's `contexts.datasets.get_dataset_users_progress` builds it) from it."""
    import sqlite3
    import uuid as uuid_

    from argilla_server.models import Record, Response, User
    from sqlalchemy import func, select
    from sqlalchemy.dialects import sqlite

    query = (
        select(User.username, Record.status, Response.status, func.count(Response.id))
        .join(Record)
        .join(User)
        .where(Record.dataset_id == uuid_.uuid4())
        .group_by(User.username, Record.status, Response.status, User.inserted_at)
        .order_by(User.inserted_at.asc())
    )
    sql = str(query.compile(dialect=sqlite.dialect()))
    with sqlite3.connect(f"file:{argilla_stack.home / 'argilla.db'}?mode=ro", uri=True) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("x",)))
    assert "COVERING INDEX ix_pickloop_records_dataset_status" in plan
