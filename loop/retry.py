"""The one retry helper for Argilla and Hub calls (after huggingface_hub's `http_backoff`).

Capped exponential waits, an explicit notion of what is retryable (connection errors, 408/429/5xx),
`Retry-After` honoured, "retry n/max" logged, and the last error re-raised unchanged.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

log = logging.getLogger("pickloop.retry")

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status carried by an exception from httpx, requests or huggingface_hub, if any."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level error classes of the HTTP clients in use (huggingface_hub 2.x uses httpx2)."""
    found: list[type[BaseException]] = [httpx.TransportError, ConnectionError, TimeoutError]
    try:
        import httpx2

        found.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import requests

        found.append(requests.ConnectionError)
        found.append(requests.Timeout)
    except ImportError:
        pass
    return tuple(found)


def cannot_heal(exc: BaseException) -> bool:
    """Transport errors that the same request will meet again: a URL scheme the client does not speak,
    a malformed URL, a host name that does not resolve."""
    if type(exc).__name__ in ("UnsupportedProtocol", "InvalidURL", "InvalidSchema", "MissingSchema"):
        return True
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # httpx wraps httpcore wraps socket.gaierror
        seen.add(id(cur))
        if isinstance(cur, socket.gaierror) and cur.errno != socket.EAI_AGAIN:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def is_retryable(exc: BaseException) -> bool:
    """Connection-level failures and 408/429/5xx answers are worth another try; nothing else is
    (401/403/404 and a bad scheme or unknown host never heal)."""
    status = status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    return isinstance(exc, transport_errors()) and not cannot_heal(exc)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return float(headers.get("Retry-After"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    max_tries: int = 5,
    base_wait: float = 0.5,
    max_wait: float = 8.0,
    retryable: Callable[[BaseException], bool] = is_retryable,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn` until it succeeds, retrying retryable errors with capped exponential backoff.

    `deadline` is a `time.monotonic()` value after which no further try starts.
    """
    for attempt in range(1, max_tries + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == max_tries or not retryable(exc):
                raise
            wait = min(max_wait, base_wait * 2 ** (attempt - 1))
            wait = max(wait, _retry_after(exc) or 0.0)
            if deadline is not None and time.monotonic() + wait > deadline:
                raise
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, type(exc).__name__, attempt, max_tries - 1, wait
            )
            sleep(wait)
    raise AssertionError("unreachable")
