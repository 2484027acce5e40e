"""Atomic file writes: every artifact is written to a temp name and renamed, so a crash never
leaves a half-written file where a later step would read it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success rename it onto `target` (file or folder).

    A folder cannot be renamed over a non-empty one, so an old folder is first moved aside into the
    temp folder and moved back if the new one cannot take its place: the old content is never
    deleted before the new content is in place (deleting it first lost it whenever the rename then
    failed, e.g. when the block wrote nothing).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = work / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = work / f"{target.name}.old"
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_text(target: str | Path, text: str, mode: int | None = None) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
        if mode is not None:
            os.chmod(tmp, mode)
    return Path(target)


def write_json(target: str | Path, obj: Any, mode: int | None = None) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", mode)


def write_secret(target: str | Path, text: str) -> Path:
    """Write a credential file readable by its owner only (0600), atomically; a folder created for it
    is owner-only too (0700), whatever the process umask."""
    parent = Path(target).parent
    if not parent.exists():
        parent.mkdir(parents=True, mode=0o700)
        os.chmod(parent, 0o700)
    return write_text(target, text, mode=0o600)
