"""Training: pickloop's train step vs a bare TRL `SFTTrainer` on the same data and settings.

Both load the same tiny model, build the same `SFTConfig`/`LoraConfig`, train and save the adapter;
pickloop's step also writes the merged model, metrics and config, and moves them into place. Timings
alternate and the best of each is kept, so a busy machine hurts both alike. Target: ratio <= 1.05.

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --examples 175 --epochs 3 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_generate import FAQ, LORA, SFT


def bare_trl(examples, base: Path, out: Path, sft: dict, seed: int) -> float:
    """What a user would write with TRL directly: same config objects, same dataset, same save."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from loop.config import ModelSettings
    from loop.data import to_dataset
    from loop.models import resolve_dtype
    from loop.phases.train import LORA_DEFAULTS, _sft_defaults

    start = time.perf_counter()
    args = SFTConfig(output_dir=str(out), seed=seed, data_seed=seed, **{**_sft_defaults(), **sft})
    dtype = resolve_dtype(ModelSettings(name_or_path=str(base)))  # same device/dtype as pickloop's step
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(examples).select_columns(["messages"]),
        processing_class=AutoTokenizer.from_pretrained(str(base)),
        peft_config=LoraConfig(**{**LORA_DEFAULTS, **LORA}),
    )
    trainer.train()
    trainer.save_model(str(out / "adapter"))
    return time.perf_counter() - start


def pickloop(examples, base: Path, round_dir: Path, sft: dict, seed: int) -> float:
    from loop.config import ModelSettings, TrainSettings
    from loop.phases.train import train_round

    start = time.perf_counter()
    train_round(
        examples,
        ModelSettings(name_or_path=str(base)),
        TrainSettings(sft=sft, lora=LORA),
        round_dir,
        seed=seed,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    import torch

    from loop.data import Example, load_examples
    from loop.demo.tiny_model import TinyModelSpec, build_tiny_model

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=175)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="Alternating timings; the best of each is kept.")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    examples = [
        Example(e.id, [e.messages[0], {**e.messages[1], "content": e.messages[1]["content"][:300].strip()}])
        for e in load_examples(FAQ)[: a.examples]
    ]
    sft = {**SFT, "num_train_epochs": a.epochs, "disable_tqdm": True, "logging_steps": 1}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        base = build_tiny_model(
            [m["content"] for e in examples for m in e.messages], work / "tiny", TinyModelSpec()
        )
        t_bare, t_ours = float("inf"), float("inf")
        for n in range(a.repeats):
            t_bare = min(t_bare, bare_trl(examples, base, work / f"bare-{n}", sft, seed=0))
            t_ours = min(t_ours, pickloop(examples, base, work / f"round-{n}", sft, seed=0))
    print(f"examples={len(examples)} epochs={a.epochs} threads={a.threads} (best of {a.repeats})")
    print(f"bare TRL SFTTrainer:       {t_bare:7.2f} s")
    print(f"pickloop train_round:      {t_ours:7.2f} s")
    print(f"ratio: {t_ours / t_bare:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
