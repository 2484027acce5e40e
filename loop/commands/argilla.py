"""`pickloop argilla ...`: the embedded Argilla server and its users."""

from __future__ import annotations

import click


@click.group()
def argilla() -> None:
    """Run and manage the embedded Argilla server (or point at a remote one)."""
