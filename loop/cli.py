"""`pickloop`: one click group with noun subgroups (`argilla up`, `model tiny`, `round push`).

Commands live in `loop/commands/<noun>.py` and only parse and print; the logic is in plain functions
the tests call. Heavy imports (torch, trl, argilla) happen inside commands so `--help` is instant.
User mistakes surface as `PickloopError` and are printed here as one clean line, never a traceback.
"""

from __future__ import annotations

import logging
import sys

import click

from loop import __version__
from loop.commands import register
from loop.errors import PickloopError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="pickloop")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Self-predict and manual-select rounds for LoRA domain fine-tuning.

    Each round: LoRA-tune the model, let it answer its own training questions, have labelers rank the
    answers in Argilla, publish the chosen answers as a dataset revision, and train again.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


register(cli)


def main() -> None:
    """Console-script entry point: turns pickloop's own errors into a clean message and exit code 1."""
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int):
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except PickloopError as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted; the run directory holds a resumable state.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
