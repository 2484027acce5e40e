"""`pickloop model ...`: models for tests and the demo."""

from __future__ import annotations

import click


@click.group()
def model() -> None:
    """Build and inspect models."""
