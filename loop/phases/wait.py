"""Phase `wait`: block until labelers have completed enough records of a round's dataset.

Argilla marks a record `completed` once `min_submitted` annotators submitted it. The driver listens
for Argilla's `record.completed` webhook (sent by the server's rq worker, signed per Standard
Webhooks) when it can receive it, and polls the progress endpoint as the fallback. A webhook only
wakes the loop early: completion is always decided from the server's progress numbers, so a lost,
duplicated or forged event changes nothing. Server errors back off; Ctrl-C leaves nothing to undo.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from argilla_setup.connection import Api
from loop.config import WaitSettings
from loop.context import RoundContext
from loop.errors import AuthError, WaitTimeout
from loop.retry import is_retryable

log = logging.getLogger("pickloop.phases.wait")

RECORD_COMPLETED = "record.completed"
MAX_ERROR_BACKOFF_S = 60.0
MIN_TALLY_INTERVAL_S = 60.0  # while the counts leave the target open, list the records at most this often


@dataclass(frozen=True)
class UserProgress:
    username: str
    submitted: int
    draft: int
    discarded: int
    pending_answered: int = field(default=0, compare=False)  # submitted or discarded, on pending records
    pending_submitted: int = field(default=0, compare=False)  # submitted, on pending records


@dataclass(frozen=True)
class Progress:
    total: int
    completed: int
    pending: int
    users: tuple[UserProgress, ...] = ()
    settled: int = 0  # pending records every labeler has answered (a discard blocks `completed` for good)
    one_short: int = 0  # pending records one submitted response short of complete
    pending_submitted: int = field(default=0, compare=False)  # submitted responses on pending records

    @property
    def done(self) -> int:
        return self.completed + self.settled

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class WaitResult:
    progress: Progress
    reason: str  # "completed" | "settled" | "fraction" | "timeout"
    seconds: float
    polls: int
    webhook_events: int
    detect_latency_s: float | None = None  # from the last webhook event to the decision, when one woke us


def dataset_progress(api: Api, dataset_id: str) -> Progress:
    """Completed/pending counts plus each labeler's submitted/draft/discarded responses."""
    body = api.get(f"/api/v1/datasets/{dataset_id}/progress")
    users = api.get(f"/api/v1/datasets/{dataset_id}/users/progress").get("users", [])
    per_user = []
    for u in users:
        done = {**{"submitted": 0, "draft": 0, "discarded": 0}, **(u.get("completed") or {})}
        todo = u.get("pending") or {}
        per_user.append(
            UserProgress(
                u["username"],
                done["submitted"] + todo.get("submitted", 0),
                done["draft"] + todo.get("draft", 0),
                done["discarded"] + todo.get("discarded", 0),
                todo.get("submitted", 0) + todo.get("discarded", 0),
                todo.get("submitted", 0),
            )
        )
    total, completed = int(body["total"]), int(body["completed"])
    pending_submitted = sum((u.get("pending") or {}).get("submitted", 0) for u in users)
    return Progress(
        total, completed, int(body["pending"]), tuple(per_user), pending_submitted=pending_submitted
    )


@dataclass
class WebhookListener:
    """A local HTTP endpoint registered as an Argilla webhook for `record.completed` on one dataset.

    Registration is idempotent per `tag`: webhooks left behind by a killed driver with the same tag
    are deleted on entry, and ours is deleted on exit.
    """

    api: Api
    dataset_id: str
    tag: str
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    events: int = 0
    last_event_at: float | None = None
    _server: ThreadingHTTPServer | None = None
    _webhook_id: str | None = None
    _secret: str | None = None

    def __enter__(self) -> WebhookListener:
        self._delete_stale()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = 204 if listener._accept(body, dict(self.headers)) else 400
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="pickloop-webhooks", daemon=True).start()
        url = self.public_url or f"http://{self.host}:{self._server.server_address[1]}/argilla"
        created = self.api.post(
            "/api/v1/webhooks", json={"url": url, "events": [RECORD_COMPLETED], "description": self.tag}
        )
        self._webhook_id, self._secret = created["id"], created["secret"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._webhook_id:
            try:
                self.api.delete(f"/api/v1/webhooks/{self._webhook_id}")
            except Exception as err:  # the server may be gone; the next run deletes it by tag
                log.warning("could not delete webhook %s: %s", self._webhook_id, type(err).__name__)
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _delete_stale(self) -> None:
        for hook in self.api.get("/api/v1/webhooks").get("items", []):
            if hook.get("description") == self.tag:
                self.api.delete(f"/api/v1/webhooks/{hook['id']}")

    def _accept(self, body: bytes, headers: dict[str, str]) -> bool:
        from standardwebhooks.webhooks import Webhook

        try:
            payload = Webhook(self._secret or "").verify(body, {k.lower(): v for k, v in headers.items()})
        except Exception:
            log.warning("rejected a webhook call with a bad signature")
            return False
        if isinstance(payload, str | bytes):
            payload = json.loads(payload)
        data = payload.get("data") or {}
        dataset = (data.get("dataset") or {}).get("id")
        if payload.get("type") == RECORD_COMPLETED and (dataset is None or str(dataset) == self.dataset_id):
            self.events += 1
            self.last_event_at = time.monotonic()
            self.wake.set()
        return True


@dataclass(frozen=True)
class Tally:
    settled: int = 0  # pending records every listed labeler answered, at least one with a discard
    one_short: int = 0  # pending records one submitted response short of `min_submitted`


def tally_pending(api: Api, dataset_id: str, labelers: Sequence[str], min_submitted: int) -> Tally:
    """Count, in one pass over the records, the pending ones that are settled or one response short.

    Argilla counts only submitted responses towards `min_submitted`, so with as many labelers as
    `min_submitted` one discard leaves a record pending forever; waiting for it would never end.
    """
    from argilla_setup.rankings import iter_rankings

    want = set(labelers)
    settled = one_short = 0
    for rec in iter_rankings(api, dataset_id):
        if rec.status == "completed":
            continue
        answered = {r.username for r in rec.responses if r.status in ("submitted", "discarded")}
        if want and want <= answered:
            settled += 1
        elif 0 < len(rec.submitted()) == min_submitted - 1:
            one_short += 1
    return Tally(settled, one_short)


def with_labelers(p: Progress, labelers: Sequence[str]) -> Progress:
    """`p` listing every configured labeler, at 0 until their first response (the server lists only
    labelers who answered something)."""
    known = {u.username for u in p.users}
    missing = tuple(UserProgress(name, 0, 0, 0) for name in labelers if name not in known)
    return replace(p, users=p.users + missing) if missing else p


@dataclass(frozen=True)
class Counted:
    """What the progress counts alone say about the pending records: `settled` lies in
    [settled_low, settled_high] and `one_short` in [one_short_low, one_short_high]."""

    settled_low: int
    settled_high: int
    one_short_low: int
    one_short_high: int

    @property
    def exact(self) -> bool:
        return self.settled_low == self.settled_high and self.one_short_low == self.one_short_high


def count_pending(p: Progress, labelers: Sequence[str], min_submitted: int) -> Counted:
    """Bounds on `tally_pending`'s numbers from the progress endpoints' counts, listing no record.

    Each labeler answers a record at most once, so with `a_u` of the `pending` records answered by
    labeler u, the records every labeler answered (settled) number at least `pending - sum(pending - a_u)`
    and at most `min(a_u)`: exact with one labeler, and once every labeler answered every pending
    record. A pending record has fewer than `min_submitted` submitted responses, so with
    `min_submitted` 2 the submitted responses on pending records count the records with one; less
    the settled ones among them (tally_pending counts a record once), they are the records one short.
    """
    pending = max(p.total - p.completed, 0)
    want = set(labelers)
    if want and pending:
        answered = {u.username: u.pending_answered for u in p.users}
        per = [min(answered.get(name, 0), pending) for name in want]
        low, high = max(pending - sum(pending - a for a in per), 0), min(per)
    else:
        low = high = 0
    if min_submitted <= 1 or not pending:
        short_low = short_high = 0
    elif min_submitted == 2:
        with_one = min(p.pending_submitted, pending)
        short_low, short_high = max(with_one - high, 0), min(with_one, pending - low)
        if len(want) == 1:  # a record the only labeler submitted is settled, never one short
            mine = next((u.pending_submitted for u in p.users if u.username in want), 0)
            short_high = min(short_high, max(with_one - mine, 0))
    else:
        short_low, short_high = 0, pending - low
    return Counted(low, high, short_low, short_high)


def live_progress(
    api: Api, dataset_id: str, labelers: Sequence[str], min_submitted: int, *, exact: bool = True
) -> Progress:
    """The dataset's progress now, with every labeler listed and the pending records tallied.

    Two count requests; the records are listed (`tally_pending`) only when the counts cannot tell
    the tally and `exact` asks for it. Without `exact`, `settled` and `one_short` are their lower
    bounds (`count_pending`).
    """
    p = with_labelers(dataset_progress(api, dataset_id), labelers)
    if p.completed >= p.total:
        return p
    counted = count_pending(p, labelers, min_submitted)
    if exact and not counted.exact:
        t = tally_pending(api, dataset_id, labelers, min_submitted)
        return replace(p, settled=t.settled, one_short=t.one_short)
    return replace(p, settled=counted.settled_low, one_short=counted.one_short_low)


def _target_reached(p: Progress, min_fraction: float) -> str | None:
    if p.total and p.completed >= p.total:
        return "completed"
    if p.total and p.done >= p.total:
        return "settled"
    if p.total and p.fraction >= min_fraction:
        return "fraction"
    return None


@dataclass
class Poller:
    """One progress check per call: two count requests, and a listing of the records only when the
    counts leave open whether the target is reached (at most every `MIN_TALLY_INTERVAL_S`) or the
    target is reached with `settled` not exactly known (once, at the end)."""

    api: Api
    dataset_id: str
    labelers: Sequence[str]
    min_submitted: int
    min_fraction: float
    tallies: int = 0
    _last_tally: float | None = None

    def __call__(self) -> Progress:
        p = with_labelers(dataset_progress(self.api, self.dataset_id), self.labelers)
        if p.completed >= p.total:
            return p
        counted = count_pending(p, self.labelers, self.min_submitted)
        low = replace(p, settled=counted.settled_low, one_short=counted.one_short_low)
        if counted.settled_low == counted.settled_high:
            return low
        if _target_reached(replace(p, settled=counted.settled_high), self.min_fraction) is None:
            return low  # not reached whatever the exact tally says
        now = time.monotonic()
        final = _target_reached(low, self.min_fraction) is not None
        if not final and self._last_tally is not None and now - self._last_tally < MIN_TALLY_INTERVAL_S:
            return low
        self._last_tally, self.tallies = now, self.tallies + 1
        t = tally_pending(self.api, self.dataset_id, self.labelers, self.min_submitted)
        return replace(p, settled=t.settled, one_short=t.one_short)


def wait_for_completion(
    api: Api,
    dataset_id: str,
    settings: WaitSettings,
    *,
    tag: str,
    labelers: Sequence[str] = (),
    min_submitted: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    wake: threading.Event | None = None,
    remote: bool = False,
) -> WaitResult:
    """Poll (and listen) until the completion target or the timeout; returns why it stopped.

    With `labelers` (the run's annotators), records every one of them answered count as done even
    when a discard keeps them from `completed`.

    A `remote` server cannot post to this machine's loopback: webhooks then need
    `wait.webhook_url` (an address the server can reach, served on `wait.webhook_bind`); without it
    the wait polls and says so.

    Raises `WaitTimeout` at the deadline unless `settings.on_timeout` is "proceed".
    """
    started = time.monotonic()
    deadline = started + settings.timeout_s if settings.timeout_s else None
    listener = None
    if settings.webhooks and remote and not settings.webhook_url:
        log.warning(
            "a remote Argilla server cannot post webhooks to this machine's 127.0.0.1; polling every "
            "%.1fs (set wait.webhook_url to an address the server reaches, or wait.webhooks: false)",
            settings.poll_interval_s,
        )
    elif settings.webhooks:
        host, _, port = settings.webhook_bind.rpartition(":")
        try:
            listener = WebhookListener(
                api,
                dataset_id,
                tag,
                host=host.strip("[]"),
                port=int(port),
                public_url=settings.webhook_url,
                wake=wake or threading.Event(),
            ).__enter__()
        except Exception as err:
            log.warning(
                "webhooks unavailable (%s); polling every %.1fs", type(err).__name__, settings.poll_interval_s
            )
    wake_event = listener.wake if listener else (wake or threading.Event())
    polls, error_wait, last = 0, settings.poll_interval_s, None
    poll = Poller(api, dataset_id, labelers, min_submitted, settings.min_completed_fraction)
    try:
        while True:
            try:
                progress = poll()
                polls += 1
                error_wait = settings.poll_interval_s
            except Exception as err:
                # AuthError is a PermissionError, so an OSError, but a bad or revoked key does not heal
                # by waiting: without this the wait retried it until the timeout, or forever.
                if isinstance(err, AuthError) or not (is_retryable(err) or isinstance(err, OSError)):
                    raise
                error_wait = min(error_wait * 2, MAX_ERROR_BACKOFF_S)
                log.warning("progress check failed (%s); next try in %.0fs", type(err).__name__, error_wait)
                progress = None
            if progress is not None:
                if progress != last and on_progress:
                    on_progress(progress)
                last = progress
                reason = _target_reached(progress, settings.min_completed_fraction)
                if reason:
                    latency = None
                    if listener and listener.last_event_at is not None:
                        latency = time.monotonic() - listener.last_event_at
                    return WaitResult(
                        progress,
                        reason,
                        time.monotonic() - started,
                        polls,
                        listener.events if listener else 0,
                        latency,
                    )
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                result = WaitResult(
                    last or Progress(0, 0, 0),
                    "timeout",
                    now - started,
                    polls,
                    listener.events if listener else 0,
                )
                if settings.on_timeout == "proceed":
                    return result
                done = f"{last.completed}/{last.total}" if last else "unknown"
                raise WaitTimeout(
                    f"labelers completed {done} records before the {settings.timeout_s:.0f}s timeout; "
                    "re-run to keep waiting, or set wait.on_timeout: proceed"
                )
            pause = error_wait if progress is None else settings.poll_interval_s
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - now))
            wake_event.wait(pause)
            wake_event.clear()
    finally:
        if listener:
            listener.__exit__(None, None, None)


# --------------------------------------------------------------------------- the phase


@dataclass(frozen=True)
class Summary:
    reason: str
    completed: int
    total: int
    settled: int = 0
    wait_s: float | None = None
    polls: int = 0
    webhook_events: int = 0
    detect_latency_s: float | None = None
    labelers: dict[str, int] = field(default_factory=dict)  # username -> submitted responses


def describe(p: Progress, *, users: bool = True, final: bool = False) -> str:
    """The labeling line, in the same words in the wait phase and in `pickloop status`:
    `132/175 records complete · alice 80 · bob 75 · 2 need one more labeler · 1 discarded`.

    `final`: the wait is over, so nothing is pending; records neither complete nor discarded were
    left unlabeled (the wait proceeded at `wait.min_completed_fraction` or its timeout).
    """
    parts = [f"{p.completed}/{p.total} records complete"]
    if users:
        parts += [labeler_counts(p)] if p.users else []
    if p.one_short and not final:
        parts.append(f"{p.one_short} need{'s' if p.one_short == 1 else ''} one more labeler")
    if p.settled:
        parts.append(f"{p.settled} discarded")
    left = p.total - p.completed - p.settled
    if final and left > 0:
        parts.append(f"{left} left unlabeled")
    return " · ".join(parts)


def labeler_counts(p: Progress) -> str:
    """Each labeler's submitted responses: `alice 80 · bob 75`."""
    return " · ".join(f"{u.username} {u.submitted}" for u in p.users)


def summary_progress(summary: Summary) -> Progress:
    """The final progress a finished wait recorded."""
    users = tuple(UserProgress(name, n, 0, 0) for name, n in sorted(summary.labelers.items()))
    pending = max(summary.total - summary.completed - summary.settled, 0)
    return Progress(summary.total, summary.completed, pending, users, summary.settled)


def run(ctx: RoundContext) -> Summary:
    from loop import annotate
    from loop.console import StatusLine

    pushed = annotate.read_push(ctx.paths.dir)
    if pushed.records == 0:  # the selection asked nothing this round (e.g. every answer verified)
        ctx.report(f"round {ctx.round}: nothing to label (no record was pushed)")
        return Summary(reason="nothing_to_label", completed=0, total=0)
    a = ctx.config.argilla
    line = StatusLine() if ctx.progress else None
    try:
        with Api(ctx.connection()) as api:
            result = wait_for_completion(
                api,
                pushed.dataset_id,
                ctx.config.wait,
                tag=f"pickloop:{ctx.config.run.name}:round-{ctx.round}",
                labelers=a.labelers,
                min_submitted=a.min_submitted,
                on_progress=lambda p: (line.update if line else ctx.report)(
                    f"round {ctx.round}: {describe(p)}"
                ),
                remote=bool(a.api_url),
            )
    finally:
        if line is not None:
            line.close()
    p = result.progress
    return Summary(
        reason=result.reason,
        completed=p.completed,
        total=p.total,
        settled=p.settled,
        wait_s=result.seconds,
        polls=result.polls,
        webhook_events=result.webhook_events,
        detect_latency_s=result.detect_latency_s,
        labelers={u.username: u.submitted for u in p.users},
    )
