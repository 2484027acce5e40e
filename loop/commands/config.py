"""`pickloop config init|check|reference`: write a starter config, validate one, print the reference."""

from __future__ import annotations

from pathlib import Path

import click

from loop.starter import write_starter


@click.group()
def config() -> None:
    """Check run configs and print the reference of every key."""


@config.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="Base causal LM: a Hub model id or a local folder.")
@click.option("--data", required=True, help="Step-1 data: a JSONL file, a local HF dataset folder or a Hub dataset id.")
@click.option("--name", default=None, help="Run name (default: the file name without .yaml).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="run.max_rounds.")
def init(path: Path, model: str, data: str, name: str | None, rounds: int) -> None:
    """Write a commented starter config to PATH for MODEL and DATA (never overwrites a file).

    Local paths are written relative to PATH's folder, where the config resolves them. The file is
    validated like `config check` before it is written (mode 0600).
    """
    cfg = write_starter(path, model=model, data=data, name=name, rounds=rounds)
    click.echo(f"Wrote {path} (run {cfg.run.name!r}). Next: pickloop config check {path}; pickloop run {path}")


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
