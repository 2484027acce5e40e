"""`pickloop run`, `pickloop round PHASE`, `pickloop status`: the round driver from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from loop.state import PHASES

CONFIG_ARG = click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))


def _driver(config_path: Path, **kwargs):
    from loop.config import load_config
    from loop.driver import Driver

    return Driver(load_config(config_path), report=lambda msg: click.echo(msg), **kwargs)


@click.command()
@CONFIG_ARG
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this round (default: run.max_rounds).",
)
def run(config: Path, rounds: int | None) -> None:
    """Run rounds until max_rounds, resuming from the last finished phase.

    Safe to interrupt (Ctrl-C or kill) and re-run: Argilla records are upserted by deterministic
    ids, submitted rankings stay on the server, and each round is published exactly once.
    """
    driver = _driver(config)
    outcomes = driver.run(rounds)
    ran = [o for o in outcomes if not o.skipped]
    click.echo(f"Done: {len(ran)} phase(s) ran, {len(outcomes) - len(ran)} already finished.")


@click.command(name="round")
@click.argument("phase", type=click.Choice(PHASES))
@CONFIG_ARG
@click.option(
    "--round",
    "round_n",
    type=click.IntRange(min=1),
    default=None,
    help="Round number (default: the current round).",
)
def round_cmd(phase: str, config: Path, round_n: int | None) -> None:
    """Run one PHASE of a round by hand (train, generate, push, wait, pull, publish)."""
    driver = _driver(config)
    n = round_n or driver.state().current_round()
    outcome = driver.run_phase(n, phase)
    if outcome.skipped:
        click.echo(f"round {n}: {phase} was already done; nothing to do.")
    else:
        click.echo(f"round {n}: {phase} done in {outcome.seconds:.1f}s.")


@click.command()
@CONFIG_ARG
@click.option("--offline", is_flag=True, help="Do not ask Argilla for live progress.")
def status(config: Path, offline: bool) -> None:
    """Show each round's phase, labeling progress (live from Argilla) and published revision."""
    from rich.console import Console
    from rich.table import Table

    from loop.status import run_status

    driver = _driver(config)
    rows = run_status(driver, live=not offline)
    table = Table(title=f"pickloop run {driver.config.run.name} ({driver.run_dir})")
    for col in ("round", "phase", "records", "completed", "pending", "labelers", "revision"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.round),
            r.phase,
            _num(r.total),
            _num(r.completed),
            _num(r.pending),
            ", ".join(f"{u}: {n}" for u, n in r.labelers) or "-",
            r.revision or "-",
        )
    Console(width=140).print(table)


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
