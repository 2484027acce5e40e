"""CLI command groups, one module per noun. Each module exposes a click group or command."""

from __future__ import annotations

import click


def register(root: click.Group) -> None:
    from loop.commands import argilla, config, demo, evaluate, model, run, seed

    root.add_command(argilla.argilla)
    root.add_command(model.model)
    root.add_command(run.run)
    root.add_command(run.round_group)
    root.add_command(config.config)
    root.add_command(run.status)
    root.add_command(demo.demo)
    root.add_command(seed.seed_data)
    root.add_command(seed.seed_review)
    root.add_command(evaluate.eval_command)
