"""`pickloop eval CONFIG --models base,round-1,round-3`: blind pairwise human evaluation of model versions."""

from __future__ import annotations

from pathlib import Path

import click

from loop.commands.run import CONFIG_ARG


@click.command(name="eval")
@CONFIG_ARG
@click.option(
    "--models",
    required=True,
    help="Models to compare, comma-separated: base (model.name_or_path) and round-N (that round's model).",
)
@click.option(
    "--name",
    default=None,
    help="Evaluation name: its folder <run dir>/eval/NAME and Argilla dataset <run>-eval-NAME "
    "(default: derived from --models, so re-running the same command resumes).",
)
def eval_command(config: Path, models: str, name: str | None) -> None:
    """Compare model versions on questions no round trained on, judged blind in Argilla.

    Each model answers every evaluation question (`eval.path` or `eval.holdout_fraction`) greedily with
    the same settings; labelers see each question with two answers as "Answer A" / "Answer B", in an
    order shuffled per record and without model names, and pick the better one or a tie. Writes
    report.json, report.md and report.png under <run dir>/eval/NAME. Safe to interrupt and re-run.

        pickloop eval configs/demo.yaml --models base,round-1,round-3
    """
    from loop.config import load_config
    from loop.evaluation.models import parse_model_list
    from loop.evaluation.run import run_eval

    result = run_eval(
        load_config(config), parse_model_list(models), name=name, report=click.echo, progress=True
    )
    for line in result.report.status_lines():
        click.echo(line)
    for warning in result.report.warnings:
        click.echo(f"warning: {warning}")
    click.echo(f"Report: {result.paths.report_md}")
