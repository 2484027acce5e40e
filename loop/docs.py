"""Generated reference pages of the documentation site: the CLI reference (from `--help`) and the
config reference (from the pydantic models). `make docs` (`python -m loop.docs`, then `mkdocs build`)
rewrites them; `--check` exits 1 when they are stale (a test runs it), so the docs never drift from
the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

from loop.cli import cli
from loop.config import config_reference_markdown

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIG_PAGE = DOCS / "reference" / "config.md"
CLI_PAGE = DOCS / "reference" / "cli.md"


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command under `group`, depth first, as (path of names, command)."""
    out = []
    for name in sorted(group.commands):
        cmd = group.commands[name]
        out.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(commands(cmd, (*prefix, name)))
    return out


def cli_reference_markdown() -> str:
    """The command reference page: each command's `--help`, as the terminal shows it."""
    parts = [
        "# Command reference\n",
        "Generated from `--help` by `make docs` (`python -m loop.docs`); do not edit by hand.\n",
    ]
    for path, cmd in commands(cli):
        name = " ".join(("pickloop", *path))
        ctx = click.Context(
            cmd, info_name=name, terminal_width=100, max_content_width=100, help_option_names=["-h", "--help"]
        )
        parts.append(f"## `{name}`\n\n```text\n{cmd.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def config_reference() -> str:
    """The config reference page, from `loop.config.config_reference_markdown` one heading level up."""
    text = config_reference_markdown()
    text = re.sub(r"^## Config reference\n", "# Config reference\n", text, flags=re.M)
    return re.sub(r"^### ", "## ", text, flags=re.M)


PAGES: dict[Path, Callable[[], str]] = {CONFIG_PAGE: config_reference, CLI_PAGE: cli_reference_markdown}


def stale_pages() -> list[Path]:
    """Generated pages whose text differs from what the code generates now."""
    out = []
    for page, render in PAGES.items():
        current = page.read_text(encoding="utf-8") if page.exists() else None
        if current != render().rstrip() + "\n":
            out.append(page)
    return out


def main(argv: list[str] | None = None) -> int:
    """Developer tool (`make docs`), not a user command: `--check` exits 1 when a page is stale."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        stale = stale_pages()
        for page in stale:
            print(f"{page.relative_to(ROOT)} is stale: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for page, render in PAGES.items():
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render().rstrip() + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
