"""`pickloop run`, `pickloop round PHASE|redo`, `pickloop status`: the round driver from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from loop.phases import PHASE_NAMES, REGISTRY

CONFIG_ARG = click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
ROUND_OPT = click.option(
    "--round",
    "round_n",
    type=click.IntRange(min=1),
    default=None,
    help="Round number (default: the current round).",
)


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


@click.group(name="round")
def round_group() -> None:
    """Run one phase of a round by hand, or redo a phase and what follows it.

    Phases, in order: train, regenerate, generate, score, push, wait, pull, aggregate, review, publish, eval.
    """


def _phase_command(name: str, doc: str) -> click.Command:
    @click.command(name=name, help=f"Run the {name} phase: {doc}.")
    @CONFIG_ARG
    @ROUND_OPT
    def cmd(config: Path, round_n: int | None) -> None:
        driver = _driver(config)
        n = round_n or driver.state().current_round()
        driver.preflight([(n, name)])
        outcome = driver.run_phase(n, name)
        if outcome.skipped:
            click.echo(f"round {n}: {name} was already done; nothing to do.")
        else:
            click.echo(f"round {n}: {name} done in {outcome.seconds:.1f}s.")

    return cmd


for _phase in REGISTRY:
    round_group.add_command(_phase_command(_phase.name, _phase.doc))


@round_group.command()
@click.argument("phase", type=click.Choice(PHASE_NAMES))
@CONFIG_ARG
@ROUND_OPT
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def redo(phase: str, config: Path, round_n: int | None, yes: bool) -> None:
    """Forget PHASE and every later phase of the round (and later rounds), to run them again.

    Use it after changing a setting of a finished phase. Nothing is deleted: the next `pickloop run`
    redoes the forgotten phases with the current settings and overwrites their artifacts; Argilla
    records are upserted by the same ids.
    """
    driver = _driver(config)
    state = driver.state()
    n = round_n or max([m for m in state.rounds if state.is_done(m, phase)], default=state.current_round())
    plan = driver.redo_plan(n, phase)
    if not plan:
        click.echo(f"round {n}: {phase} has not run; nothing to redo.")
        return
    click.echo("Will redo: " + ", ".join(f"round {m} {p}" for m, p in plan))
    if not yes:
        click.confirm("Continue?", abort=True)
    driver.redo(n, phase)
    click.echo(f"Forgotten. Run `pickloop run {config}` to redo them.")


STATUS_COLUMNS = ("round", "next phase", "selection", "labeling", "labelers (submitted)", "revision")


@click.command()
@CONFIG_ARG
@click.option("--offline", is_flag=True, help="Do not ask Argilla for live progress.")
@click.option(
    "--run-name",
    default=None,
    help="Show this run instead of run.name (e.g. demo-simulated, the simulated demo's run).",
)
def status(config: Path, offline: bool, run_name: str | None) -> None:
    """Show each round's next phase, the turns asked and auto-kept, labeling progress (live from Argilla)
    and published revision (with its preference pairs), and the latest evaluation (`pickloop eval`):
    each model's strength and win rate against base."""
    from rich.console import Console
    from rich.table import Table

    from loop.config import load_config
    from loop.driver import Driver
    from loop.status import latest_evaluation, run_status

    cfg = load_config(config)
    if run_name:
        from pydantic import ValidationError

        try:
            cfg.run.name = run_name
        except ValidationError:
            raise click.BadParameter(
                "letters, digits, '.', '_' and '-' only, at most 64 characters", param_hint="--run-name"
            ) from None
    driver = Driver(cfg, report=lambda msg: click.echo(msg))
    rows = run_status(driver, live=not offline)
    if not rows:
        click.echo(f"pickloop run {cfg.run.name}: nothing has run yet ({driver.run_dir}).")
        simulated = driver.run_dir.with_name(f"{driver.run_dir.name}-simulated")
        if not run_name and (simulated / "state.json").exists():
            click.echo(f"The simulated demo ran as {simulated.name}: pickloop status {config} --run-name {simulated.name}")
        return
    table = Table(title=f"pickloop run {driver.config.run.name} ({driver.run_dir})")
    for col in STATUS_COLUMNS:
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.round),
            r.phase,
            r.selection_text(),
            r.labeling_text(),
            " · ".join(f"{u} {n}" for u, n in r.labelers) or "-",
            r.revision_text(),
        )
    console = Console()
    if not console.is_terminal:  # a pipe or a log: wide enough that no cell wraps
        console = Console(width=200)
    console.print(table)
    for line in latest_evaluation(driver.run_dir):
        click.echo(line)
