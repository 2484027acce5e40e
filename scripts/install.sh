#!/usr/bin/env bash
# Idempotent install into ./.venv: torch first (torch==2.13.0 resolves to the local CPU build on
# these machines; plain `torch` would pull several GB of CUDA wheels), then pickloop and its extras.
# Re-running is cheap: the project install is skipped while pyproject.toml and constraints.txt are
# unchanged. constraints.txt pins every dependency to the versions the suite last passed with, so a
# fresh install (CI included) gets the same libraries; PICKLOOP_CONSTRAINTS= (empty) installs the
# newest versions pyproject.toml allows instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PICKLOOP_VENV:-.venv}
TORCH_SPEC=${PICKLOOP_TORCH:-torch==2.13.0}
EXTRAS=${1:-test}
CONSTRAINTS=${PICKLOOP_CONSTRAINTS-constraints.txt}

if [ ! -x "$VENV/bin/python" ]; then
  echo "pickloop: creating virtual environment in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "pickloop: installing $TORCH_SPEC"
  "$PY" -m pip install -q "$TORCH_SPEC"
fi

stamp="$VENV/.pickloop-installed"
want="$(cat pyproject.toml ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "pickloop: installing pickloop[$EXTRAS] (editable)"
  "$PY" -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi
