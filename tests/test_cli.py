from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from loop import __version__
from loop.cli import cli


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(_all_commands(command, path))
    return found


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.strip() == f"pickloop, version {__version__}"


@pytest.mark.parametrize("path", _all_commands(cli), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "-h"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert " ".join(path) in result.output


def test_help_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = "import sys; from loop.cli import cli; print(sorted(m for m in ('torch','trl','argilla','transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
