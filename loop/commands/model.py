"""`pickloop model ...`: models for tests and the demo."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def model() -> None:
    """Build and inspect models."""


@model.command()
@click.option(
    "--data",
    required=True,
    help="QA data whose texts train the tokenizer: JSONL file or HF dataset folder.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write."
)
@click.option("--hidden", default=128, show_default=True, help="Hidden size.")
@click.option("--layers", default=4, show_default=True, help="Transformer layers.")
@click.option("--heads", default=4, show_default=True, help="Attention heads (must divide --hidden).")
@click.option("--vocab-size", default=4000, show_default=True, help="BPE vocabulary size.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
def tiny(data: str, out: Path, hidden: int, layers: int, heads: int, vocab_size: int, seed: int) -> None:
    """Build a tiny Qwen2 model (BPE tokenizer trained on --data, ChatML template, random weights).

    The folder loads with `AutoModelForCausalLM`/`AutoTokenizer` offline (HF_HUB_OFFLINE=1) and is
    the same for the same data and seed. Seconds, not minutes.
    """
    from loop.demo.tiny_model import TinyModelSpec, build_from_data

    if hidden % heads:
        raise click.BadParameter(f"{heads} does not divide --hidden {hidden}", param_hint="--heads")
    spec = TinyModelSpec(hidden=hidden, layers=layers, heads=heads, vocab_size=vocab_size, seed=seed)
    path = build_from_data(data, out, spec)
    click.echo(f"Wrote tiny model to {path}")
