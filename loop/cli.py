"""`pickloop`: one click group with noun subgroups (`argilla up`, `model tiny`, `round push`).

Commands live in `loop/commands/<noun>.py` and only parse and print; the logic is in plain functions
the tests call. Heavy imports (torch, trl, argilla) happen inside commands so `--help` is instant.
User mistakes and expected failures (`PickloopError`, connection and file-system errors) surface as
one clean line and exit code 1; a traceback only with `--debug`.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from loop import __version__
from loop.commands import register
from loop.console import quiet
from loop.errors import PickloopError, describe_error

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_debug = False


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="pickloop")
@click.option("-v", "--verbose", count=True, help="More log output, with the libraries' own warnings and progress bars (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (for bug reports).")
def cli(verbose: int, debug: bool) -> None:
    """Self-predict and manual-select rounds for LoRA domain fine-tuning.

    Each round: LoRA-tune the model, let it answer its own training questions, have labelers rank the
    answers in Argilla, publish the chosen answers as a dataset revision, and train again.
    """
    global _debug
    _debug = debug
    _blank_env_is_unset()
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    quiet(verbose)  # library warnings and progress bars only with -v


register(cli)

BLANK_MEANS_UNSET = ("HF_ENDPOINT", "HF_TOKEN", "ARGILLA_API_URL", "ARGILLA_API_KEY")
"""Variables an empty value would break (huggingface_hub builds URLs on an empty `HF_ENDPOINT`): an
empty or blank one is treated as unset, before any library reads it."""


def _blank_env_is_unset() -> None:
    for name in BLANK_MEANS_UNSET:
        if name in os.environ and not os.environ[name].strip():
            del os.environ[name]


RESUMABLE = "Interrupted; the run directory holds a resumable state: re-run the same command to continue."


def main() -> None:
    """Console-script entry point: one clean line and exit code 1 for every expected error."""
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int):
            sys.exit(code)
    except click.exceptions.Abort as exc:
        interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
        click.echo(RESUMABLE if interrupted else "Aborted.", err=True)
        sys.exit(130 if interrupted else 1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(RESUMABLE, err=True)
        sys.exit(130)
    except Exception as exc:
        message = describe_error(exc)
        if message is None or _debug:
            raise
        click.secho(f"Error: {message}", fg="red", err=True)
        sys.exit(1)


__all__ = ["PickloopError", "cli", "main"]

if __name__ == "__main__":
    main()
