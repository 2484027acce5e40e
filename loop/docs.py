"""Generated README sections: the CLI reference (from `--help`) and the config reference (from the
pydantic models). `make docs` (`python -m loop.docs`) refreshes README.md; `--check` fails when stale
(a test runs it), so the README never drifts from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

README = Path(__file__).resolve().parents[1] / "README.md"
MARKERS = {
    "cli-reference": "cli_reference_markdown",
    "config-reference": "config_reference",
}


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name in sorted(group.commands):
        cmd = group.commands[name]
        out.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


def cli_reference_markdown() -> str:
    from loop.cli import cli

    parts = ["Generated from `--help` by `make docs`.\n"]
    for path, cmd in _commands(cli):
        name = " ".join(("pickloop", *path))
        ctx = click.Context(
            cmd, info_name=name, terminal_width=100, max_content_width=100, help_option_names=["-h", "--help"]
        )
        parts.append(f"#### `{name}`\n\n```\n{cmd.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def config_reference() -> str:
    from loop.config import config_reference_markdown

    text = config_reference_markdown()
    # The README nests it one level deeper, under its own "### Config reference".
    text = re.sub(r"^## Config reference\n+", "", text, flags=re.M)
    return re.sub(r"^### ", "#### ", text, flags=re.M)


def render(readme: str) -> str:
    for marker, func in MARKERS.items():
        start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
        if start not in readme or end not in readme:
            raise SystemExit(f"README.md lacks the {start} ... {end} markers")
        body = globals()[func]().strip()
        readme = re.sub(
            re.escape(start) + r".*?" + re.escape(end),
            lambda _m, s=start, e=end, b=body: f"{s}\n{b}\n{e}",
            readme,
            flags=re.S,
        )
    return readme


def main(argv: list[str] | None = None) -> int:
    """Developer tool (`make docs`), not a user command: `--check` exits 1 when README.md is stale."""
    args = sys.argv[1:] if argv is None else argv
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if "--check" not in args:
        README.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != current:
        print("README.md is stale: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
