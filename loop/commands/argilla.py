"""`pickloop argilla ...`: the embedded Argilla server and its users."""

from __future__ import annotations

from pathlib import Path

import click

HOME_OPTION = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Server home (database, index, logs, credentials). Default: $PICKLOOP_HOME/argilla.",
)


@click.group()
def argilla() -> None:
    """Run and manage the embedded Argilla server (or point at a remote one)."""


@argilla.command()
@HOME_OPTION
@click.option("--port", default=6900, show_default=True, help="HTTP port of the server and UI.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C stops the whole stack.")
def up(home: Path | None, port: int, host: str, foreground: bool) -> None:
    """Start the embedded Argilla stack: server + UI, redis, rq worker, SQLite search engine.

    A second `up` on the same home reports the running server instead of starting another.
    """
    from argilla_setup import server

    if foreground:
        click.echo(f"Starting Argilla in the foreground on http://{host}:{port} (Ctrl-C stops it)")
        server.run_foreground(home, port, host)
        return
    info = server.start(home, port, host=host)
    if info.already_running:
        click.echo(f"Argilla is already running at {info.api_url} (home {info.home}).")
        return
    click.echo(f"Argilla is running at {info.api_url} (home {info.home}).")
    owner_file = server.StackPaths(info.home).owner_file
    if info.created_owner:
        click.echo("Owner account created. These credentials are shown once; they are kept in")
        click.echo(f"{owner_file} (mode 0600):")
        click.echo(f"  username: {info.username}")
        click.echo(f"  password: {info.password}")
        click.echo(f"  API key:  {info.api_key}")
    else:
        click.echo(f"Owner credentials: {owner_file}")
    click.echo("Stop it with `pickloop argilla down`.")


@argilla.command()
@HOME_OPTION
def down(home: Path | None) -> None:
    """Stop exactly the processes `argilla up` started for this home."""
    from argilla_setup import server

    stopped = server.stop(home)
    click.echo(f"Stopped {', '.join(stopped)}." if stopped else "Nothing was running.")


@argilla.command()
@HOME_OPTION
def status(home: Path | None) -> None:
    """Report server, worker, redis and search-engine health. Exit code 1 when unhealthy."""
    from argilla_setup import server

    st = server.status(home)
    click.echo(f"home: {st.home}")
    for comp in st.components:
        state = "running" if comp.running else "stopped"
        pid = f" pid {comp.pid}" if comp.pid else ""
        detail = f"  {comp.detail}" if comp.detail else ""
        click.echo(f"{comp.name:<14}{state}{pid}{detail}")
    if st.search_engine:
        desc = ", ".join(f"{k}={v}" for k, v in st.search_engine.items())
        click.echo(f"{'search engine':<14}ok  {desc}")
    else:
        click.echo(f"{'search engine':<14}unknown (server not answering)")
    if not st.healthy:
        raise click.exceptions.Exit(1)


@argilla.command()
@HOME_OPTION
def reindex(home: Path | None) -> None:
    """Rebuild the search index from the Argilla database."""
    from argilla_setup import server

    count = server.reindex(home)
    click.echo(f"Reindexed {count} records.")
