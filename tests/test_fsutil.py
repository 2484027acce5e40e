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


# --------------------------------------------------------------------------- atomic_path


def _leftovers(folder: Path, name: str) -> list[str]:
    """Temp entries `atomic_path` made beside `name` and did not clean up."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_a_file_appears_only_when_complete(tmp_path: Path) -> None:
    from loop.fsutil import atomic_path

    target = tmp_path / "deep" / "out.jsonl"
    with atomic_path(target) as tmp:
        assert tmp.parent.parent == target.parent and tmp.name == target.name
        with tmp.open("w") as f:
            f.write("line 1\n")
            f.flush()
            assert not target.exists()  # half-written content is never at the target
            f.write("line 2\n")
        assert not target.exists()
    assert target.read_text() == "line 1\nline 2\n"
    assert _leftovers(target.parent, target.name) == []


def test_a_folder_is_replaced_whole(tmp_path: Path) -> None:
    from loop.fsutil import atomic_path

    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    (target / "sub").mkdir()
    (target / "sub" / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_text("new")
        (tmp / "config.json").write_text("{}")
        # Until the block ends, readers see the old folder, untouched.
        assert sorted(p.name for p in target.iterdir()) == ["old.bin", "sub"]
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "weights.bin"]
    assert (target / "weights.bin").read_text() == "new"
    assert _leftovers(tmp_path, "model") == []


def test_a_folder_can_replace_a_missing_target_and_a_file_a_file(tmp_path: Path) -> None:
    from loop.fsutil import atomic_path, write_text

    with atomic_path(tmp_path / "fresh") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("a")
    assert (tmp_path / "fresh" / "a").read_text() == "a"
    write_text(tmp_path / "f.txt", "one")
    write_text(tmp_path / "f.txt", "two")
    assert (tmp_path / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "fresh"]


def test_an_error_in_the_block_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    import pytest

    from loop.fsutil import atomic_path

    target = tmp_path / "state.json"
    target.write_text('{"v": 1}')
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed")
    assert target.read_text() == '{"v": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_an_error_in_the_block_keeps_the_old_folder_and_leaves_nothing(tmp_path: Path) -> None:
    import pytest

    from loop.fsutil import atomic_path

    target = tmp_path / "round-1" / "model"
    target.mkdir(parents=True)
    (target / "adapter.bin").write_text("old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "adapter.bin").write_text("new, half")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["adapter.bin"]
    assert (target / "adapter.bin").read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_a_block_that_wrote_nothing_keeps_the_old_folder(tmp_path: Path) -> None:
    """The new content never appeared: the old folder must not have been deleted for it."""
    import pytest

    from loop.fsutil import atomic_path

    target = tmp_path / "model"
    target.mkdir()
    (target / "adapter.bin").write_text("old")
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass
    assert (target / "adapter.bin").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_folder_cannot_silently_replace_a_file(tmp_path: Path) -> None:
    import pytest

    from loop.fsutil import atomic_path

    target = tmp_path / "out"
    target.write_text("old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.mkdir()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_modes_follow_the_umask_and_an_explicit_mode_wins(tmp_path: Path) -> None:
    """The temp folder is 0700 (mkdtemp); what lands at the target has the caller's modes, not that."""
    import os
    import stat

    from loop.fsutil import atomic_path, write_text

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        old = os.umask(umask)
        try:
            f = write_text(tmp_path / f"f-{umask:o}.txt", "x")
            with atomic_path(tmp_path / f"d-{umask:o}") as tmp:
                tmp.mkdir()
                (tmp / "inner").write_text("x")
            secret = write_text(tmp_path / f"s-{umask:o}", "k", mode=0o600)
        finally:
            os.umask(old)
        d = tmp_path / f"d-{umask:o}"
        assert (mode(f), mode(d), mode(d / "inner")) == (file_mode, dir_mode, file_mode)
        assert mode(secret) == 0o600
    old = os.umask(0o022)
    try:
        assert mode(write_text(tmp_path / "s-0", "k", mode=0o600)) == 0o600
        # Rewriting a file gives the new file's mode, not the old one's.
        assert mode(write_text(tmp_path / "s-0", "k2")) == 0o644
    finally:
        os.umask(old)
