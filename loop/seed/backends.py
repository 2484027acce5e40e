"""Generators of seed data behind one small interface: a local HF causal LM, or an OpenAI-compatible
chat endpoint (vLLM, TGI, a hosted API).

`name` is what rows record as their generator: the model path or id, or `model@host` for an endpoint;
never a key. `count_tokens` is the generator's tokenizer (the local model's) or whitespace words (an
endpoint's tokenizer is unknown). `complete` answers prompts in order; an endpoint failure that
retries do not heal raises `EndpointError` (the run stops; a re-run continues where it stopped).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from loop.errors import ConfigError, EndpointError
from loop.retry import is_retryable, with_retries
from loop.seed.chunking import whitespace_tokens

log = logging.getLogger("pickloop.seed")

KEY_ENV_VARS = ("PICKLOOP_SEED_API_KEY", "OPENAI_API_KEY")


class Backend(Protocol):
    name: str
    batch_size: int  # prompts worth sending in one `complete` call

    def count_tokens(self, text: str) -> int: ...

    def prompt_overflow(self, prompt: str) -> tuple[int, int] | None:
        """(prompt tokens + new tokens, context) when a prompt cannot fit the model's context, else None."""
        ...

    def complete(self, prompts: Sequence[str]) -> list[str]: ...


class LocalBackend:
    """A local causal LM: a model folder, a Hub id, or a finished round's folder (its LoRA adapter on
    the base, merged in memory), decoded greedily and batched by `loop.phases.generate.complete`."""

    def __init__(self, source: str | Path, *, max_new_tokens: int = 512, batch_size: int = 8):
        from loop.config import ModelSettings
        from loop.models import context_length, load_generation_model

        self.name = str(source)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        from loop.phases.generate import _fingerprint

        self.model, self.tokenizer = load_generation_model(source, ModelSettings(name_or_path=str(source)))
        self.context = context_length(self.model)
        self.fingerprint = _fingerprint(source)  # a retrained round is another model: no stale reuse

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _ids(self, prompt: str) -> list[int]:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = prompt
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_overflow(self, prompt: str) -> tuple[int, int] | None:
        need = len(self._ids(prompt)) + self.max_new_tokens
        return (need, self.context) if self.context and need > self.context else None

    def complete(self, prompts: Sequence[str]) -> list[str]:
        from loop.phases.generate import complete

        return complete(
            self.model, self.tokenizer, [self._ids(p) for p in prompts], self.max_new_tokens, self.batch_size
        )


def api_key(api_key_file: str | Path | None) -> str | None:
    """The endpoint's key: `PICKLOOP_SEED_API_KEY`, `OPENAI_API_KEY`, else a 0600 `--api-key-file`."""
    import os

    from loop.config import read_secret

    for var in KEY_ENV_VARS[:-1]:
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    return read_secret(KEY_ENV_VARS[-1], api_key_file, required=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def chat_url(endpoint: str) -> str:
    """`.../v1` or a server root becomes `.../v1/chat/completions`; a full completions URL is kept."""
    url = endpoint.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


class EndpointBackend:
    """An OpenAI-compatible `/v1/chat/completions` server, one request per prompt, over httpx with the
    project's retry helper (timeouts, connection errors, 408/429/5xx retried with capped backoff)."""

    batch_size = 1

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        key: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        timeout: float = 120.0,
        max_tries: int = 4,
        base_wait: float = 1.0,
    ):
        import httpx

        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--endpoint {endpoint!r} is not an http(s) URL; e.g. http://127.0.0.1:8000/v1")
        if key and parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ConfigError(
                f"refusing to send the API key over plain http to {parts.hostname}; use https, or a "
                "loopback address for a local server"
            )
        self.url = chat_url(endpoint)
        self.name = f"{model}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self.model = model
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.timeout, self.max_tries, self.base_wait = timeout, max_tries, base_wait
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._key = key
        self._client = httpx.Client(timeout=timeout, headers=headers, trust_env=False)

    def count_tokens(self, text: str) -> int:
        return whitespace_tokens(text)

    def prompt_overflow(self, prompt: str) -> tuple[int, int] | None:
        return None  # the server's context is unknown here; it answers 400 when a prompt is too long

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _post(self, prompt: str) -> str:
        import httpx

        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
        }

        def call() -> httpx.Response:
            response = self._client.post(self.url, json=body)
            response.raise_for_status()
            return response

        try:
            response = with_retries(
                call,
                what=f"chat completion from {self.name}",
                max_tries=self.max_tries,
                base_wait=self.base_wait,
            )
        except httpx.TimeoutException:
            raise EndpointError(
                f"{self.url} did not answer within {self.timeout:g}s ({self.max_tries} tries); is the server "
                "busy? raise --timeout, then re-run to continue"
            ) from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise EndpointError(
                    f"{self.url} refused the request (HTTP {status}); check the API key "
                    f"({' or '.join(KEY_ENV_VARS)}, or --api-key-file)"
                ) from None
            detail = self._redact(" ".join(exc.response.text.split()))[:200]
            hint = "" if is_retryable(exc) else "; check --model and the prompt size (--chunk-tokens)"
            raise EndpointError(f"{self.url} answered HTTP {status}: {detail}{hint}") from None
        except httpx.TransportError as exc:
            raise EndpointError(
                f"cannot reach {self.url} ({type(exc).__name__}); is the server running and the URL right?"
            ) from None
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise EndpointError(
                f"{self.url} answered something that is not an OpenAI chat completion "
                f"(expected JSON with choices[0].message.content); is --endpoint an OpenAI-compatible server?"
            ) from None
        return content if isinstance(content, str) else ""

    def complete(self, prompts: Sequence[str]) -> list[str]:
        return [self._post(p) for p in prompts]

    def close(self) -> None:
        self._client.close()
