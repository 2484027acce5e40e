"""The one resolver for pickloop's directories.

Everything pickloop writes lives under `PICKLOOP_HOME` (default `./.pickloop`):
`runs/<run>/round-<n>/<artifact>` for rounds, `argilla/` for the embedded server's home.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "PICKLOOP_HOME"


def home() -> Path:
    """pickloop's state directory, honouring `PICKLOOP_HOME`."""
    return Path(os.environ.get(ENV_HOME) or Path.cwd() / ".pickloop").expanduser().resolve()


def argilla_home() -> Path:
    """Default home of the embedded Argilla server (database, search index, logs, credentials)."""
    return Path(os.environ.get("PICKLOOP_ARGILLA_HOME") or home() / "argilla").expanduser().resolve()


def run_dir(run_name: str, base: Path | None = None) -> Path:
    return (base or home() / "runs") / run_name


def round_dir(run_name: str, round_n: int, base: Path | None = None) -> Path:
    return run_dir(run_name, base) / f"round-{round_n}"
