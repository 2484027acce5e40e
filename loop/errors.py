"""All pickloop errors. Each also inherits the built-in that fits, so callers can catch either.

The CLI turns any `PickloopError` into a clean message (no traceback) in one place: `loop.cli.main`.
Messages never contain secrets (API keys, tokens, passwords).
"""

from __future__ import annotations

from pathlib import Path


class PickloopError(Exception):
    """Base of every error pickloop raises on purpose."""


class ConfigError(PickloopError, ValueError):
    """A run config is invalid: raised with the file, line (1-based) and YAML path of the offending key."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
    ):
        self.file = str(file) if file is not None else None
        self.key = key
        self.line = line
        place = self.file + (f":{line}" if line is not None else "") if self.file else None
        if place is None and line is not None:
            place = f"line {line}"
        where = ", ".join(p for p in (place, f"key {key!r}" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(PickloopError, ValueError):
    """A dataset row is invalid: raised with file, line (1-based) and field; nothing is written."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        parts = []
        if self.file:
            parts.append(self.file + (f":{line}" if line is not None else ""))
        elif line is not None:
            parts.append(f"row {line}")
        if field:
            parts.append(f"field {field!r}")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class ArgillaError(PickloopError, RuntimeError):
    """The Argilla server refused or failed a request pickloop needs."""


class ServerStartError(ArgillaError):
    """The embedded Argilla stack could not start (port in use, redis missing, migration failed)."""


class AuthError(ArgillaError, PermissionError):
    """Bad or missing credentials (HTTP 401/403)."""


class NotFoundError(PickloopError, LookupError):
    """A named thing (workspace, dataset, user, revision) does not exist."""


class AlreadyExistsError(PickloopError, ValueError):
    """Creating something that exists already, where that is not idempotent (e.g. a user)."""


class HubError(PickloopError, RuntimeError):
    """Publishing to or loading from the Hub (or the local revision store) failed."""


class StateError(PickloopError, RuntimeError):
    """The run directory's state is inconsistent with the request (e.g. a phase run out of order)."""


class EndpointError(PickloopError, RuntimeError):
    """A generation endpoint (OpenAI-compatible chat server) failed, timed out, or answered in a form
    that is not a chat completion. Never carries the API key."""


class WaitTimeout(PickloopError, TimeoutError):
    """Waiting for labelers reached its deadline before the completion target."""


def describe_error(exc: BaseException) -> str | None:
    """One line for an expected failure (ours, or a connection/file-system error); None for a bug.

    Never includes secrets: our messages are written without them, and library errors are reduced
    to their type, target and reason.
    """
    if isinstance(exc, PickloopError):
        return str(exc)
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or type(exc).__name__}:{where} (check the path and its permissions)"
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror}:{where}"
    name = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module in {"httpx", "httpcore", "requests", "urllib3"} and ("Connect" in name or "Timeout" in name):
        return f"cannot reach {_url_of(exc) or 'the server'} ({name}); is it running and is the URL right?"
    if module in {"httpx", "requests"} and name in (
        "UnsupportedProtocol",
        "InvalidURL",
        "InvalidSchema",
        "MissingSchema",
    ):
        return (
            f"bad URL {_url_of(exc) or ''} ({name}: {_first_line(exc)}); URLs start with http:// or https://"
        )
    if module == "huggingface_hub" and (name.endswith(("Error", "NotFound")) or name == "HFValidationError"):
        # Repository/revision/entry not found, validation, offline mode, HTTP errors: first line only
        # (the rest is a request id and a link); tokens never appear in these messages.
        return f"Hugging Face Hub: {_first_line(exc)} ({name})"
    if "StorageFull" in str(exc) or "No space left on device" in str(exc):
        # safetensors (SafetensorError) and torch.save (RuntimeError) report ENOSPC in their own words
        return f"No space left on device ({name} while writing); free some space and re-run: it resumes"
    return None


def _url_of(exc: BaseException) -> str | None:
    try:
        request = getattr(exc, "request", None)
    except RuntimeError:  # httpx raises when an error has no request attached
        return None
    url = getattr(request, "url", None)
    return str(url) if url is not None else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
