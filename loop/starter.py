"""`pickloop config init`: a commented starter config for a chosen model and data file.

The text is checked with the same validation as `pickloop config check` before anything is written,
and an existing file is never overwritten, so a typo in `--name` costs nothing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from loop.config import RunConfig, parse_config
from loop.errors import PickloopError

_PLAIN = re.compile(r"^[A-Za-z0-9_~.][A-Za-z0-9_./@:+-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".txt", ".arrow"}


class StarterExistsError(PickloopError, FileExistsError):
    """`config init` was pointed at a file that already exists (it never overwrites)."""


def _scalar(text: str) -> str:
    """A YAML scalar for `text`: plain when that reads back as the same string, else double-quoted."""
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)


def as_config_path(value: str, config_dir: Path) -> str:
    """How the config names a local file or folder: relative to the config's folder (where `load_config`
    resolves it), so the config works from any working directory. A Hub id (`org/name` that is not a
    local path) is kept as given."""
    path = Path(value).expanduser()
    if not path.exists() and _HUB_ID.match(value) and path.suffix.lower() not in _FILE_SUFFIXES:
        return value
    relative = os.path.relpath(path.absolute(), config_dir.absolute())
    return relative if relative.startswith("..") else f"./{relative}"  # never mistaken for a Hub id


def default_run_name(config: Path) -> str:
    """The config file's stem, reduced to the characters a run name may hold."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.stem).strip("-._") or "run"
    return name[:64]


def starter_text(*, name: str, model: str, data: str, rounds: int) -> str:
    """The commented config: every section a first run needs, the rest left to `config reference`."""
    return f"""\
# pickloop run config, written by `pickloop config init`.
#
#   pickloop config check THIS_FILE   # validate it (instant; no model is loaded)
#   pickloop run THIS_FILE            # run the rounds (resumable: re-run the same command)
#   pickloop status THIS_FILE         # where each round is
#
# Relative paths are relative to this file's folder. Secrets never go here: ARGILLA_API_KEY and
# HF_TOKEN come from the environment or from 0600 files (argilla.api_key_file, publish.hub_token_file).
# Every key, with its default: `pickloop config reference`.

# The run: names the run directory ($PICKLOOP_HOME/runs/<name>) and the Argilla datasets.
run:
  name: {_scalar(name)}
  seed: 0
  max_rounds: {rounds}

# Step-1 data: a JSONL file (`question`/`answer`, or `messages`), a local HF dataset folder, or a Hub
# dataset id (then `revision:` may name a branch, tag or commit). `pickloop seed-data` writes one.
data:
  path: {_scalar(data)}

# The base causal LM (a Hub id or a local folder) with a chat template; bf16 on a GPU that has it.
model:
  name_or_path: {_scalar(model)}
  dtype: auto

# TRL SFT + PEFT LoRA: `sft` and `lora` take any SFTConfig / LoraConfig field; typos are errors.
train:
  strategy: continue  # or merge_and_stack, from_base
  sft:
    learning_rate: 2.0e-4
    num_train_epochs: 2
    per_device_train_batch_size: 8
    max_length: 1024
    logging_steps: 10
    save_strategy: "no"
    report_to: none
  lora:
    r: 16
    lora_alpha: 32
    lora_dropout: 0.05
    target_modules: all-linear

# Self-predict: K candidates per assistant turn (one greedy, the rest sampled).
generate:
  k: 4
  max_new_tokens: auto  # 1.25 x the answers' 99th-percentile length

# Labeling. No api_url: the embedded server (`pickloop argilla up`). For a deployment of your own, set
# api_url (key from ARGILLA_API_KEY) and, for webhooks, wait.webhook_url / wait.webhook_bind.
argilla:
  workspace: pickloop
  labelers: []  # annotator usernames, e.g. [alice, bob]: the push creates missing accounts (0600 files)
  min_submitted: 1  # 2 gives each record an agreement score

# Waiting for the labelers: no timeout waits as long as it takes (re-run to resume after a stop).
wait:
  poll_interval_s: 10
  min_completed_fraction: 1.0

# Labelers who disagree: keep the current answer (or best, or review).
aggregate:
  on_conflict: keep_current

# No hub_repo: revisions round-N go to the local store under the run directory.
publish:
  # hub_repo: your-org/your-dataset   # token from HF_TOKEN
  private: true
"""


def write_starter(config: Path, *, model: str, data: str, name: str | None = None, rounds: int = 3) -> RunConfig:
    """Write the starter config to `config` (mode 0600) after validating it; refuse an existing file."""
    if config.exists() or config.is_symlink():
        raise StarterExistsError(f"{config}: already exists; config init never overwrites, pick another file name")
    folder = config.parent
    text = starter_text(
        name=name or default_run_name(config),
        model=as_config_path(model, folder),
        data=as_config_path(data, folder),
        rounds=rounds,
    )
    cfg = parse_config(yaml.safe_load(text), file=str(config), base_dir=folder.absolute())
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
    tmp = folder / f".{config.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            os.link(tmp, config)  # fails if the file appeared meanwhile: never overwrite
        except FileExistsError:
            raise StarterExistsError(f"{config}: already exists; config init never overwrites") from None
    finally:
        tmp.unlink(missing_ok=True)
    return cfg
