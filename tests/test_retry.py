"""The one retry helper: what is retried, how often, how long it waits, and what reaches the caller.

Waits are recorded through `with_retries(sleep=...)`; the HTTP tests talk to a real local server that
answers from a script (503, 429 with Retry-After, then 200), through httpx and through `Api`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from argilla_setup.connection import Api, Connection, raise_for_status
from loop.errors import ArgillaError, AuthError, NotFoundError
from loop.retry import RETRYABLE_STATUS, is_retryable, status_of, with_retries


class Flaky:
    """A callable that raises the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/x")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


# --------------------------------------------------------------------------- what is retryable


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    assert status in RETRYABLE_STATUS
    assert is_retryable(http_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_client_errors_and_501_are_not(status: int) -> None:
    assert not is_retryable(http_error(status))


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
    ],
)
def test_connection_level_failures_are_retryable(exc: BaseException) -> None:
    assert status_of(exc) is None
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", [ValueError("bad"), KeyError("k"), RuntimeError("boom")])
def test_other_errors_are_not(exc: BaseException) -> None:
    assert not is_retryable(exc)


def test_status_is_read_from_response_or_attribute() -> None:
    assert status_of(http_error(503)) == 503
    exc = RuntimeError("x")
    exc.status_code = 429  # type: ignore[attr-defined]
    assert status_of(exc) == 429
    assert status_of(RuntimeError("no status")) is None


# --------------------------------------------------------------------------- attempts and waits


def test_retries_until_success_with_capped_exponential_waits() -> None:
    waits: list[float] = []
    fn = Flaky(*(http_error(503) for _ in range(6)))
    assert with_retries(fn, what="t", max_tries=7, base_wait=0.5, max_wait=4.0, sleep=waits.append) == "ok"
    assert fn.calls == 7
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_gives_up_after_max_tries_and_reraises_the_last_error_unchanged() -> None:
    waits: list[float] = []
    errors = [http_error(500), http_error(502), http_error(503)]
    fn = Flaky(*errors)
    with pytest.raises(httpx.HTTPStatusError) as info:
        with_retries(fn, what="t", max_tries=3, base_wait=1.0, sleep=waits.append)
    assert info.value is errors[-1]
    assert fn.calls == 3
    assert waits == [1.0, 2.0]  # no wait after the last try


def test_a_non_retryable_error_raises_at_once() -> None:
    waits: list[float] = []
    err = http_error(404)
    fn = Flaky(err)
    with pytest.raises(httpx.HTTPStatusError) as info:
        with_retries(fn, what="t", max_tries=5, sleep=waits.append)
    assert info.value is err and fn.calls == 1 and waits == []


def test_a_caller_supplied_predicate_decides() -> None:
    waits: list[float] = []
    fn = Flaky(ValueError("try again"), ValueError("try again"))
    out = with_retries(
        fn, what="t", retryable=lambda e: isinstance(e, ValueError), base_wait=0.25, sleep=waits.append
    )
    assert out == "ok" and waits == [0.25, 0.5]
    with pytest.raises(httpx.HTTPStatusError):  # retryable by default, not by this predicate
        with_retries(Flaky(http_error(503)), what="t", retryable=lambda e: False, sleep=waits.append)
    assert waits == [0.25, 0.5]


def test_retry_after_lengthens_the_wait_but_never_shortens_it() -> None:
    waits: list[float] = []
    fn = Flaky(
        http_error(429, {"Retry-After": "7"}),
        http_error(503, {"Retry-After": "0"}),
        http_error(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # a date: ignored
    )
    assert with_retries(fn, what="t", base_wait=1.0, max_wait=30, sleep=waits.append) == "ok"
    assert waits == [7.0, 2.0, 4.0]


def test_no_try_starts_after_the_deadline() -> None:
    waits: list[float] = []
    fn = Flaky(http_error(503), http_error(503), http_error(503))
    # The first wait (2 s) ends before the deadline, the second (4 s) would not: raise instead.
    with pytest.raises(httpx.HTTPStatusError) as info:
        with_retries(fn, what="t", base_wait=2.0, deadline=time.monotonic() + 3.0, sleep=waits.append)
    assert fn.calls == 2 and waits == [2.0]
    assert status_of(info.value) == 503


def test_logs_retry_n_of_max(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="pickloop.retry")
    with_retries(Flaky(http_error(503)), what="GET /thing", max_tries=4, sleep=lambda s: None)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg == "GET /thing failed (HTTPStatusError); retry 1/3 in 0.5s"


# --------------------------------------------------------------------------- a real local HTTP server


@dataclass
class Scripted:
    """A local HTTP server answering each request with the next (status, headers) of `script`,
    then 200 forever; `seen` lists the methods of the requests it received."""

    script: list[tuple[int, dict[str, str]]]
    seen: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    state = Scripted([])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            with lock:
                state.seen.append(self.command)
                status, headers = state.script.pop(0) if state.script else (200, {})
            body = b'{"ok": true}' if status == 200 else b'{"detail": "busy"}'
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 - http.server API

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_httpx_call_retried_through_503_and_retry_after(scripted: Scripted) -> None:
    scripted.script = [(503, {}), (429, {"Retry-After": "3"})]
    waits: list[float] = []

    def get() -> dict:
        response = httpx.get(scripted.url + "/thing")
        response.raise_for_status()
        return response.json()

    assert with_retries(get, what="GET /thing", base_wait=0.5, sleep=waits.append) == {"ok": True}
    assert scripted.seen == ["GET", "GET", "GET"]
    assert waits == [0.5, 3.0]


def test_httpx_call_with_a_404_is_tried_once(scripted: Scripted) -> None:
    scripted.script = [(404, {})]
    waits: list[float] = []

    def get() -> None:
        httpx.get(scripted.url + "/missing").raise_for_status()

    with pytest.raises(httpx.HTTPStatusError):
        with_retries(get, what="GET /missing", sleep=waits.append)
    assert scripted.seen == ["GET"] and waits == []


def test_a_refused_connection_is_retried_then_reraised() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    server.server_close()  # nothing listens there now
    waits: list[float] = []
    with pytest.raises(httpx.ConnectError):
        with_retries(lambda: httpx.get(url), what="GET /", max_tries=3, sleep=waits.append)
    assert waits == [0.5, 1.0]


def test_api_get_rides_out_a_503(scripted: Scripted) -> None:
    scripted.script = [(503, {})]
    with Api(Connection(scripted.url, "k"), max_tries=2) as api:
        assert api.get("/api/v1/thing") == {"ok": True}
    assert scripted.seen == ["GET", "GET"]


def test_api_gives_up_after_its_tries_with_the_mapped_error(scripted: Scripted) -> None:
    scripted.script = [(502, {}), (502, {})]
    with (
        Api(Connection(scripted.url, "k"), max_tries=2) as api,
        pytest.raises(ArgillaError, match="HTTP 502"),
    ):
        api.get("/api/v1/thing")
    assert scripted.seen == ["GET", "GET"]


def test_api_post_is_not_replayed_after_a_500_but_is_after_a_503(scripted: Scripted) -> None:
    scripted.script = [(500, {})]
    with Api(Connection(scripted.url, "k"), max_tries=3) as api:
        with pytest.raises(ArgillaError, match="HTTP 500"):
            api.post("/api/v1/things", json={})
        assert scripted.seen == ["POST"]  # the server may have acted on it: never sent twice
        scripted.script = [(503, {})]
        assert api.post("/api/v1/things", json={}) == {"ok": True}
    assert scripted.seen == ["POST", "POST", "POST"]


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (403, AuthError), (404, NotFoundError)])
def test_api_does_not_retry_auth_or_missing(scripted: Scripted, status: int, error: type) -> None:
    scripted.script = [(status, {})]
    with Api(Connection(scripted.url, "k"), max_tries=3) as api, pytest.raises(error):
        api.get("/api/v1/thing")
    assert scripted.seen == ["GET"]


def test_mapped_server_errors_keep_their_status_for_retry() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/api/v1/x")
    with pytest.raises(ArgillaError) as info:
        raise_for_status(httpx.Response(503, request=request, text="busy"))
    assert status_of(info.value) == 503 and is_retryable(info.value)
