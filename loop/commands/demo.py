"""`pickloop demo`: README command 1."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--rounds", type=click.IntRange(min=1), default=None, help="Rounds to run (default: the demo config's 3)."
)
@click.option(
    "--simulate-labelers",
    "simulate",
    type=click.IntRange(min=0, max=20),
    default=0,
    show_default=True,
    help="Let N simulated labelers rank through the real Argilla API (0: wait for real people).",
)
@click.option(
    "--degrade",
    type=click.FloatRange(0, 1),
    default=0.4,
    show_default=True,
    help="Fraction of FAQ answers degraded in the step-1 data.",
)
@click.option(
    "--limit", type=click.IntRange(min=2), default=None, help="Use only the first N FAQ entries (quicker)."
)
@click.option("--port", default=6900, show_default=True, help="Port of the embedded Argilla server.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Run config (default: the packaged demo config, configs/demo.yaml).",
)
@click.option(
    "--eval",
    "evaluate",
    is_flag=True,
    help="Hold out 10% of the questions before round 1 and end with a blind pairwise evaluation of base "
    "vs every round (judged by the simulated labelers with --simulate-labelers).",
)
def demo(
    rounds: int | None,
    simulate: int,
    degrade: float,
    limit: int | None,
    port: int,
    config_path: Path | None,
    evaluate: bool,
) -> None:
    """Run the whole loop on the embedded default: Argilla, tiny model, Python FAQ, local revisions.

    Without --simulate-labelers it waits for real labelers in the Argilla UI (URL and credentials are
    printed). Interrupt and re-run at any time: it resumes where it stopped.
    """
    from loop.demo.report import markdown_table, summary_line
    from loop.demo.run import run_demo

    result = run_demo(
        config_path=config_path,
        rounds=rounds,
        simulate_labelers=simulate,
        fraction=degrade,
        limit=limit,
        port=port,
        report=click.echo,
        evaluate=evaluate,
    )
    click.echo("")
    click.echo(markdown_table(result.rows))
    click.echo(summary_line(result.rows, result.simulated))
    click.echo(f"Report: {result.report_md}")
    click.echo(f"Plot:   {result.plot_png}")
    if result.evaluation is not None:
        from loop.evaluation.report import headline

        ev = result.evaluation.report
        click.echo("")
        click.echo(headline(ev) + ":")
        for line in ev.status_lines():
            click.echo(f"  {line}")
        for warning in ev.warnings:
            click.echo(f"  warning: {warning}")
        click.echo(f"Evaluation report: {result.evaluation.paths.report_md}")
    if result.simulated:
        click.echo(
            "(Labelers were SIMULATED in this run"
            + (", and so were the judges.)" if result.evaluation else ".)")
        )
