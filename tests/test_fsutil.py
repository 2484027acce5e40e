"""Atomic writes and owner-only secrets."""

from __future__ import annotations

from pathlib import Path


def test_secret_file_and_the_folder_made_for_it_are_owner_only(tmp_path: Path) -> None:
    import os
    import stat

    from loop.fsutil import write_secret

    old = os.umask(0o022)
    try:
        path = write_secret(tmp_path / "users" / "alice.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
