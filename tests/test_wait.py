"""The wait step against the real embedded Argilla: webhook wake-up, polling, fraction, timeout."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from argilla_setup import rankings, schema, users
from argilla_setup.connection import Api, Connection, client
from loop.config import WaitSettings
from loop.errors import WaitTimeout
from loop.phases.wait import dataset_progress, wait_for_completion


@pytest.fixture
def round_dataset(argilla_stack):
    """A 3-record round dataset in a fresh workspace, plus an annotator's API client."""
    import argilla as rg

    tag = uuid.uuid4().hex[:6]
    conn = Connection(argilla_stack.api_url, argilla_stack.api_key)
    owner = Api(conn)
    ws = f"wait-{tag}"
    (user,) = users.add_users(owner, [f"w-{tag}"], workspace=ws, create_workspace=True)
    sdk = client(conn)
    ds = rg.Dataset(
        name=f"wait-{tag}", workspace=ws, settings=schema.round_settings(1, 2, client=sdk), client=sdk
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
