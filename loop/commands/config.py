"""`pickloop config check|reference`: validate a run config, print the config reference."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def config() -> None:
    """Check run configs and print the reference of every key."""


@config.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path) -> None:
    """Validate a run config: types, unknown keys, TRL/PEFT pass-through fields, secrets."""
    from loop.config import load_config

    cfg = load_config(path)
    click.echo(f"{path}: OK (run {cfg.run.name!r}, {cfg.run.max_rounds} rounds, run dir {cfg.run_dir()})")


@config.command()
def reference() -> None:
    """Print the config reference (Markdown), generated from the config models."""
    from loop.config import config_reference_markdown

    click.echo(config_reference_markdown(), nl=False)
