"""`pickloop argilla ...`: the embedded Argilla server and its users."""

from __future__ import annotations

import sys
from pathlib import Path

import click

HOME_OPTION = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Server home (database, index, logs, credentials). Default: $PICKLOOP_HOME/argilla.",
)
SHOW_PASSWORD_OPTION = click.option(
    "--show-password/--no-show-password",
    default=None,
    help="Print new passwords (default: only when stdout is a terminal; else name the 0600 file).",
)


def _interactive(show_password: bool | None) -> bool:
    """Show a secret only to a person at a terminal: a log file or CI output outlives it."""
    if show_password is not None:
        return show_password
    return sys.stdout.isatty()


@click.group()
@click.option(
    "--api-url",
    envvar="ARGILLA_API_URL",
    show_envvar=True,
    default=None,
    help="Use this Argilla deployment instead of the embedded server.",
)
@click.option(
    "--api-key",
    envvar="ARGILLA_API_KEY",
    show_envvar=True,
    default=None,
    help="API key for --api-url (an owner's, to manage users).",
)
@click.pass_context
def argilla(ctx: click.Context, api_url: str | None, api_key: str | None) -> None:
    """Run and manage the embedded Argilla server (or point at a remote one)."""
    ctx.obj = {**(ctx.obj or {}), "api_url": api_url, "api_key": api_key}


@argilla.command()
@HOME_OPTION
@click.option("--port", default=6900, show_default=True, help="HTTP port of the server and UI.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C stops the whole stack.")
@SHOW_PASSWORD_OPTION
def up(home: Path | None, port: int, host: str, foreground: bool, show_password: bool | None) -> None:
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
    if info.created_owner and _interactive(show_password):
        click.echo("Owner account created. These credentials are shown once; they are kept in")
        click.echo(f"{owner_file} (mode 0600):")
        click.echo(f"  username: {info.username}")
        click.echo(f"  password: {info.password}")
        click.echo(f"  API key:  {info.api_key}")
    elif info.created_owner:
        click.echo(
            f"Owner account {info.username} created; password and API key kept in {owner_file} (mode 0600)."
        )
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


# --- users: labeler accounts (argilla_setup/users.py) -------------------------------------------


def _api(ctx: click.Context, home: Path | None):
    """A REST client for the deployment chosen by --api-url/--api-key, env vars or the embedded home."""
    from argilla_setup.connection import Api, resolve_connection

    obj = ctx.find_object(dict) or {}
    conn = resolve_connection(obj.get("api_url"), obj.get("api_key"), home=home)
    return Api(conn)


@argilla.group()
def users() -> None:
    """Labeler accounts: add (random passwords), list, remove."""


@users.command("add")
@click.argument("names", nargs=-1, required=True)
@click.option("--workspace", "-w", default=None, help="Add the users to this workspace.")
@click.option("--create-workspace", is_flag=True, help="Create --workspace when it does not exist.")
@click.option(
    "--role",
    type=click.Choice(["annotator", "admin"]),
    default="annotator",
    show_default=True,
    help="Role of the new accounts.",
)
@HOME_OPTION
@SHOW_PASSWORD_OPTION
@click.pass_context
def users_add(
    ctx: click.Context,
    names: tuple[str, ...],
    workspace: str | None,
    create_workspace: bool,
    role: str,
    home: Path | None,
    show_password: bool | None,
) -> None:
    """Create labeler accounts NAME... with random passwords.

    Each user's credentials are written (mode 0600) to <home>/users/NAME.json; the password is also
    printed once when stdout is a terminal (or with --show-password). Nothing is created when any name
    is invalid or taken, or when the workspace does not exist.
    """
    from argilla_setup.users import add_users, describe_new_user

    with _api(ctx, home) as api:
        created = add_users(
            api, list(names), workspace=workspace, create_workspace=create_workspace, role=role, home=home
        )
        url = api.conn.api_url
    interactive = _interactive(show_password)
    click.echo(f"Created {len(created)} user(s) on {url}:")
    for user in created:
        click.echo(f"  {describe_new_user(user, interactive)}")


@users.command("list")
@HOME_OPTION
@click.pass_context
def users_list(ctx: click.Context, home: Path | None) -> None:
    """List users with their role and workspaces (never passwords)."""
    from argilla_setup.users import list_users

    with _api(ctx, home) as api:
        infos = list_users(api)
    width = max([len(u.name) for u in infos] + [4])
    click.echo(f"{'name':<{width}}  {'role':<9}  workspaces")
    for u in infos:
        click.echo(f"{u.name:<{width}}  {u.role:<9}  {', '.join(u.workspaces) or '-'}")


@users.command("remove")
@click.argument("names", nargs=-1, required=True)
@HOME_OPTION
@click.pass_context
def users_remove(ctx: click.Context, names: tuple[str, ...], home: Path | None) -> None:
    """Delete users NAME... and their credentials files (all must exist, else nothing is removed)."""
    from argilla_setup.users import remove_users

    with _api(ctx, home) as api:
        removed = remove_users(api, list(names), home=home)
    click.echo(f"Removed {', '.join(removed)}.")
