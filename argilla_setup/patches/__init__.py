"""Guarded patches of argilla-server 2.8 internals, applied in the embedded stack's processes.

Each patch re-implements or wraps upstream functions, so each records the sha256 of
`inspect.getsource` of every upstream function it was written against. `apply()` first checks that
the installed argilla-server is `ARGILLA_SERVER_VERSION`, then, per patch, that every recorded
source is unchanged. A patch whose upstream changed (or any patch, on another argilla-server version)
is refused with a warning naming the patch and the function, and the server runs without it:

- speedups (`speedups.py`, `rankings_route.py`): behaviour-preserving, so running without them is
  only slower. `PICKLOOP_NO_SPEEDUPS=1` turns them all off.
- security fixes (`record_privacy.py`): `required`, never turned off by `PICKLOOP_NO_SPEEDUPS`, and a
  refused one stops the process (fail closed) rather than serving labelers unblinded records.

Every patch counts the calls that reach its code; the server's owner-only
`GET /api/v1/x-pickloop/patches` reports what was applied, what was refused and why, and the counts
(tests use it to prove each patch is really on the path it claims to speed up or protect).

`python -m argilla_setup.patches` prints the current hashes, to review an upgrade against.
No `from __future__ import annotations`: FastAPI reads the info route's annotations.
"""

import hashlib
import importlib
import inspect
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

log = logging.getLogger("pickloop.patches")

ARGILLA_SERVER_VERSION = "2.8.0"
NO_SPEEDUPS_ENV = "PICKLOOP_NO_SPEEDUPS"
INFO_PATH = "/x-pickloop/patches"


class PatchRefusedError(RuntimeError):
    """A required (security) patch cannot be applied to the installed argilla-server."""


@dataclass(frozen=True)
class Patch:
    name: str
    apply: Callable[[], None]
    upstream: dict[str, str]
    """`module:qualname` of each upstream function the patch copies or wraps -> sha256 of its source."""
    required: bool = False
    """A security fix: on when speedups are off, and a refusal is fatal."""
    server_only: bool = False
    """Mounts or wraps HTTP routes: nothing to do in the rq worker."""


HITS: Counter[str] = Counter()
APPLIED: list[str] = []
REFUSED: dict[str, str] = {}


def hit(name: str) -> None:
    """Count one call that reached patch `name` (a dict increment: cheap enough for hot paths)."""
    HITS[name] += 1


def upstream_object(target: str) -> Any:
    """The object `module:Qual.name` names; a property gives its getter."""
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if isinstance(obj, type) else getattr(obj, part)
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    return obj


def source_hash(target: str) -> str:
    return hashlib.sha256(inspect.getsource(upstream_object(target)).encode()).hexdigest()


def check(patch: Patch, installed: str | None = None) -> list[str]:
    """Why `patch` cannot be applied (empty: it can)."""
    installed = installed or version("argilla-server")
    if installed != ARGILLA_SERVER_VERSION:
        return [f"argilla-server is {installed}, the patch was written for {ARGILLA_SERVER_VERSION}"]
    problems = []
    for target, expected in patch.upstream.items():
        try:
            got = source_hash(target)
        except (ImportError, AttributeError, OSError, TypeError) as exc:
            problems.append(f"{target} not found ({type(exc).__name__}: {exc})")
            continue
        if got != expected:
            problems.append(f"{target} changed upstream (source sha256 {got[:12]}, expected {expected[:12]})")
    return problems


def registry() -> list[Patch]:
    from argilla_setup.patches import rankings_route, record_privacy, speedups

    return [*speedups.PATCHES, rankings_route.PATCH, *record_privacy.PATCHES]


def apply(*, server: bool = True, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Apply the patches that pass their guard, once per process; returns those applied by this call.

    `server=False` (the rq worker) skips route patches. Raises PatchRefusedError when a required
    patch is refused.
    """
    no_speedups = os.environ.get(NO_SPEEDUPS_ENV, "") not in ("", "0")
    done = []
    for patch in registry():
        if names is not None and patch.name not in names:
            continue
        if patch.name in APPLIED or patch.name in REFUSED or (patch.server_only and not server):
            continue
        if no_speedups and not patch.required:
            REFUSED[patch.name] = f"{NO_SPEEDUPS_ENV} is set"
            continue
        problems = check(patch)
        if problems:
            REFUSED[patch.name] = "; ".join(problems)
            if patch.required:
                raise PatchRefusedError(
                    f"security patch {patch.name!r} cannot be applied: {REFUSED[patch.name]}. "
                    "Review argilla_setup/patches against the installed argilla-server before serving "
                    "labelers (without it annotators could see hidden metadata and others' responses)."
                )
            log.warning("patch %s not applied, running unpatched: %s", patch.name, REFUSED[patch.name])
            continue
        patch.apply()
        APPLIED.append(patch.name)
        done.append(patch.name)
    if server:
        _mount_info()
    return tuple(done)


_mounted = False


def _mount_info() -> None:
    global _mounted
    if _mounted:
        return
    from argilla_server.api.routes import api_v1
    from argilla_server.models import User
    from argilla_server.security import auth
    from fastapi import APIRouter, HTTPException, Security

    router = APIRouter()

    @router.get(INFO_PATH, include_in_schema=False)
    async def patches_info(current_user: User = Security(auth.get_current_user)) -> dict:  # noqa: B008
        if not current_user.is_owner:
            raise HTTPException(status_code=403, detail="owner only")
        return {
            "argilla_server": version("argilla-server"),
            "applied": list(APPLIED),
            "refused": dict(REFUSED),
            "hits": dict(HITS),
            "pid": os.getpid(),
        }

    api_v1.include_router(router)
    _mounted = True


def _require(owner: Any, name: str) -> Any:
    if not hasattr(owner, name):
        raise RuntimeError(f"argilla-server changed: {getattr(owner, '__name__', owner)!r} has no {name!r}")
    return getattr(owner, name)


if __name__ == "__main__":  # pragma: no cover - a maintenance aid
    for p in registry():
        for t in p.upstream:
            print(f"{p.name:18} {t}  {source_hash(t)}")
