"""Cheap checks before a run spends time: everything a pending phase will need, checked up front.

`pickloop run` trains for minutes to hours before it first talks to Argilla or the Hub; a wrong URL,
a missing key or an unreadable data file found only then wastes that time (and, at publish, the
labelers' work). `preflight` checks what the phases still to run will need and raises the first
problem as a `PickloopError` (one clean CLI line); local checks come first, the network last. Nothing
is written: the run directory is probed with a temp file that is removed at once.

Each check is a small function; `preflight` picks them from the pending phases, so a resumed run
whose round-1 training is done does not re-read the step-1 data, and one past `wait` does not need
Argilla. Heavy libraries are not imported: the model check reads `config.json`, the Hub check only
looks for a token.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from loop.config import RunConfig, http_url_problem, read_secret
from loop.errors import ArgillaError, AuthError, ConfigError, NotFoundError, PickloopError, StateError

ARGILLA_PHASES = frozenset({"push", "wait", "pull"})
TRIES = 2  # one retry: a server that is down now is down in half a second too
TIMEOUT_S = 10.0


def preflight(
    config: RunConfig, run_dir: Path, pending: Iterable[tuple[int, str]], *, has_input: bool
) -> None:
    """Check what the `(round, phase)` pairs in `pending` need; `has_input` when round 1's data
    snapshot exists already (then the configured data is not read again)."""
    pending = list(pending)
    if not pending:
        return
    phases = {name for _, name in pending}
    check_run_dir(run_dir)
    if "train" in phases:
        check_model(config)
        check_replay_scorer(config)
    if (1, "train") in pending and not has_input:
        check_data(config)
    if "publish" in phases and config.publish.hub_repo:
        check_hub(config)
    if config.aggregate.on_conflict == "review" and "review" in phases:
        phases.add("push")  # the review phase pushes, waits and pulls a review dataset
    if any(name == "eval" and config.eval.evaluates_after(n) for n, name in pending):
        phases.add("push")  # the eval phase pushes, waits and pulls an evaluation dataset
        if config.publish.hub_repo and "publish" not in phases:
            check_hub(config)  # and commits its result to the card
    if phases & ARGILLA_PHASES:  # the only check that needs the network: last
        check_argilla(config)


def check_run_dir(run_dir: Path) -> None:
    """The run directory (or the folder it will be created in) is a writable folder."""
    target = Path(run_dir)
    probe_in = target
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise StateError(f"run directory {target} cannot be created: {probe_in} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".pickloop-probe-", dir=probe_in)
    except OSError as exc:
        what = "is" if probe_in == target else f"cannot be created in {probe_in}, which is"
        raise StateError(
            f"run directory {target} {what} not writable ({exc.strerror}); set `run.dir` or "
            "PICKLOOP_HOME to a writable folder, or fix its permissions"
        ) from None
    os.close(fd)
    os.unlink(name)


def check_replay_scorer(config: RunConfig) -> None:
    """A `train.replay.scorer` folder exists and holds a model (Hub ids are checked when loaded)."""
    scorer = config.train.replay.scorer
    if config.train.replay.mode == "none" or not Path(scorer).is_absolute():
        return
    if not (Path(scorer) / "config.json").is_file():
        raise config.error(f"no model folder with a config.json at {scorer}", "train.replay.scorer")


def check_model(config: RunConfig) -> None:
    """`model.name_or_path` is a folder with a readable `config.json`, or a Hub model we can reach."""
    name = config.model.name_or_path
    key = "model.name_or_path"
    path = Path(name)
    if not path.is_absolute():  # a Hub id (local paths are absolute once the config is loaded)
        check_hub_endpoint()
        _hub_model_config(config, name)
        return
    if not path.exists():
        raise config.error(f"no such model folder: {name}", key)
    if not path.is_dir():
        raise config.error(f"not a model folder (a file): {name}", key)
    cfg_file = path / "config.json"
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise config.error(f"{name} has no config.json; not a transformers model folder", key) from None
    except (OSError, ValueError) as exc:
        raise config.error(f"{cfg_file} is unreadable ({type(exc).__name__}: {_reason(exc)})", key) from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise config.error(f"{cfg_file} has no model_type; not a transformers model", key)


def _hub_model_config(config: RunConfig, repo_id: str) -> None:
    """Fetch (or find in the cache) the Hub model's `config.json`: one small request."""
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(repo_id, "config.json", token=read_secret("HF_TOKEN", required=False))
    except PickloopError:
        raise
    except Exception as exc:
        library = type(exc).__module__.split(".")[0] in ("huggingface_hub", "httpx", "requests", "urllib3")
        if not library and not isinstance(exc, OSError | ValueError):
            raise
        raise config.error(
            f"cannot load model {repo_id!r} from the Hub ({type(exc).__name__}: {_reason(exc)})",
            "model.name_or_path",
        ) from None


def check_data(config: RunConfig) -> None:
    """The step-1 data loads and every row is valid (the same loader the train phase uses)."""
    from loop.data import load_examples

    d = config.data
    load_examples(d.path, revision=d.revision, split=d.split)


def check_hub(config: RunConfig) -> None:
    """Publishing to `publish.hub_repo` needs a token: `HF_TOKEN`, the token file, or a stored login."""
    check_hub_endpoint()
    token = read_secret("HF_TOKEN", config.publish.hub_token_file, required=False)
    if token:
        return
    from huggingface_hub import get_token

    if not get_token():
        raise config.error(
            "publishing to the Hub needs a token: set HF_TOKEN, point `publish.hub_token_file` at a 0600 "
            "file, or run `hf auth login`",
            "publish.hub_repo",
        )


def check_hub_endpoint() -> None:
    """`HF_ENDPOINT`, when set, is an http(s) URL (the CLI treats an empty one as unset)."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint is None:
        return
    problem = http_url_problem(endpoint)
    if problem:
        raise ConfigError(f"environment variable HF_ENDPOINT: {problem}")


def check_argilla(config: RunConfig) -> None:
    """The Argilla server answers and accepts the key (`/api/v1/me`), without the long retries."""
    import httpx

    from argilla_setup.connection import Api
    from loop.context import argilla_connection

    a = config.argilla
    if a.api_url:
        try:
            read_secret("ARGILLA_API_KEY", a.api_key_file)
        except ConfigError as exc:
            key = "argilla.api_key_file" if a.api_key_file else "argilla.api_url"
            raise config.error(f"Argilla needs an API key: {exc}", key) from None
    conn = argilla_connection(config)
    where = "argilla.api_url" if a.api_url else "the embedded server (`pickloop argilla up`)"
    try:
        with Api(conn, timeout=TIMEOUT_S, max_tries=TRIES) as api:
            api.me()
    except AuthError as exc:
        raise AuthError(
            f"Argilla at {conn.api_url} refused the API key ({exc}); check ARGILLA_API_KEY"
        ) from None
    except NotFoundError:
        raise ArgillaError(
            f"{conn.api_url} answered 404 for /api/v1/me: not an Argilla 2.x server; check {where}"
        ) from None
    except httpx.HTTPError as exc:
        raise ArgillaError(
            f"cannot reach Argilla at {conn.api_url} ({type(exc).__name__}: {_reason(exc)}); is it running, "
            f"and is {where} right?"
        ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no answer"
