"""Step 1 of a round: LoRA fine-tune with TRL `SFTTrainer` + PEFT on the current dataset.

Loss is on assistant tokens only (`assistant_only_loss=True`), which needs `{% generation %}` markers
in the chat template; templates without them are patched (TRL's known templates, or ChatML). Every
`SFTConfig`/`LoraConfig` field can be set from the run config (`train.sft`, `train.lora`); unknown keys
are a `ConfigError` naming `train.sft.<key>`. Defaults are CPU-safe and switch to bf16 on a GPU.

A round writes, under its directory: `adapter/`, `merged/` (base + adapter, what generation and
`merge_and_stack` load), `metrics.json` (loss curve) and `train_config.json` (the exact config and the
base model path, written last: a round without it is unfinished and is retrained). Everything is
trained in `<round>/.train.partial/` and moved into place at the end, so a killed run never leaves an
adapter that looks finished.

The same code runs on one GPU unchanged (the device is picked by `transformers.Trainer`). Multi-GPU
goes through accelerate, no home-made distribution:

    accelerate launch --num_processes 4 -m loop.train \\
        --data data.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --round-dir runs/demo/round-1 \\
        [--previous runs/demo/round-0] [--strategy continue] [--sft '{"num_train_epochs": 2}'] [--seed 0]
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loop.config import ModelSettings, TrainSettings
from loop.data import Example, to_dataset
from loop.errors import ConfigError, StateError
from loop.fsutil import write_json

if TYPE_CHECKING:
    from trl import SFTConfig, SFTTrainer

PARTIAL = ".train.partial"
MANAGED_SFT_KEYS = {"output_dir": "pickloop trains in the round directory"}
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
    "bias": "none",
    "task_type": "CAUSAL_LM",
}


@dataclass(frozen=True)
class RoundModel:
    """A finished training round: its adapter, the model the adapter applies to, the merged copy."""

    round_dir: Path
    adapter_dir: Path
    base_model: str
    merged_dir: Path | None
    original_base: str
    strategy: str


@dataclass(frozen=True)
class TrainResult:
    model: RoundModel
    losses: list[dict[str, float]]
    first_loss: float
    final_loss: float
    runtime_s: float


def _sft_defaults(cuda: bool) -> dict[str, Any]:
    import torch

    return {
        "num_train_epochs": 3,
        "learning_rate": 2e-4,
        "per_device_train_batch_size": 8,
        "max_length": 1024,
        "assistant_only_loss": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": not cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "activation_checkpointing": False,
    }


def _check_keys(given: dict[str, Any], cls: type, path: str) -> None:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in given:
        if key in MANAGED_SFT_KEYS and path == "train.sft":
            raise ConfigError(f"cannot be set: {MANAGED_SFT_KEYS[key]}", key=f"{path}.{key}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {cls.__name__} field{hint}", key=f"{path}.{key}")


def check_train_settings(settings: TrainSettings) -> None:
    """Reject `train.sft`/`train.lora` keys that `SFTConfig`/`LoraConfig` do not have."""
    from peft import LoraConfig
    from trl import SFTConfig

    _check_keys(settings.sft, SFTConfig, "train.sft")
    _check_keys(settings.lora, LoraConfig, "train.lora")


def build_sft_config(settings: TrainSettings, output_dir: str | Path, seed: int) -> SFTConfig:
    import torch
    from trl import SFTConfig

    check_train_settings(settings)
    kwargs = {"seed": seed, "data_seed": seed, **_sft_defaults(torch.cuda.is_available()), **settings.sft}
    if "activation_checkpointing" not in {f.name for f in dataclasses.fields(SFTConfig)}:
        kwargs["gradient_checkpointing"] = kwargs.pop("activation_checkpointing")
    try:
        return SFTConfig(output_dir=str(output_dir), **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key="train.sft") from exc


def build_lora_config(settings: TrainSettings):
    from peft import LoraConfig

    check_train_settings(settings)
    try:
        return LoraConfig(**{**LORA_DEFAULTS, **settings.lora})
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key="train.lora") from exc


def ensure_generation_markers(tokenizer) -> None:
    """Give the tokenizer a chat template with `{% generation %}` markers, or explain what to do."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    from loop.demo.tiny_model import CHATML_TEMPLATE

    template = tokenizer.chat_template
    if template is None:
        raise ConfigError(
            "the tokenizer has no chat template; set train.sft.chat_template_path to a .jinja file",
            key="model.name_or_path",
        )
    if has_generation_markers(template):
        return
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:
        patched = CHATML_TEMPLATE if _renders_like(tokenizer, CHATML_TEMPLATE) else None
    if patched is None and not has_generation_markers(template):
        raise ConfigError(
            "the chat template has no {% generation %} markers and pickloop cannot add them; give a template "
            "with markers (train.sft.chat_template_path) or set train.sft.assistant_only_loss: false",
            key="train.sft.assistant_only_loss",
        )
    if patched is not None:
        tokenizer.chat_template = patched


def _renders_like(tokenizer, template: str) -> bool:
    probe = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
    ]
    for msgs, gen in ((probe, False), (probe[1:], False), (probe[:4], True)):
        try:
            a = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            b = tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=gen, chat_template=template
            )
        except Exception:  # a template may reject a probe; then it is not ChatML
            return False
        if a != b:
            return False
    return True


def resolve_dtype(model_settings: ModelSettings):
    import torch

    if model_settings.dtype == "auto":
        return "auto" if torch.cuda.is_available() else torch.float32
    return getattr(torch, model_settings.dtype)


def load_causal_lm(path: str | Path, model_settings: ModelSettings):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path), dtype=resolve_dtype(model_settings), trust_remote_code=model_settings.trust_remote_code
    )


def _explicit(path: str | Path) -> str:
    """Absolute path for a local folder, the id itself for a Hub model: never a relative path."""
    p = Path(path)
    return str(p.resolve()) if p.exists() else str(path)


def _base_for(model_settings: ModelSettings, strategy: str, previous: RoundModel | None) -> str:
    if previous is None or strategy == "from_base":
        return _explicit(model_settings.name_or_path)
    if strategy == "continue":
        return previous.base_model
    if previous.merged_dir is None:
        raise StateError(f"{previous.round_dir} has no merged/ model, which merge_and_stack starts from")
    return str(previous.merged_dir)


def make_trainer(
    examples: Sequence[Example],
    model_settings: ModelSettings,
    train_settings: TrainSettings,
    output_dir: str | Path,
    *,
    previous: RoundModel | None = None,
    seed: int = 0,
) -> tuple[SFTTrainer, str]:
    """The `SFTTrainer` for one round and the path of the model its adapter applies to."""
    from peft import PeftModel
    from transformers import AutoTokenizer, set_seed
    from trl import SFTTrainer

    strategy = train_settings.strategy if previous is not None else "from_base"
    base = _base_for(model_settings, strategy, previous)
    args = build_sft_config(train_settings, output_dir, seed)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=model_settings.trust_remote_code)
    if args.assistant_only_loss and args.chat_template_path is None:
        ensure_generation_markers(tokenizer)
    set_seed(seed)
    model = load_causal_lm(base, model_settings)
    peft_config = None
    if strategy == "continue":
        model = PeftModel.from_pretrained(model, str(previous.adapter_dir), is_trainable=True)
    else:
        peft_config = build_lora_config(train_settings)
    dataset = to_dataset(examples).select_columns(["messages"])
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    return trainer, base


def train_round(
    examples: Sequence[Example],
    model_settings: ModelSettings,
    train_settings: TrainSettings,
    round_dir: str | Path,
    *,
    previous: RoundModel | None = None,
    seed: int = 0,
    save_merged: bool = True,
) -> TrainResult:
    """Train one round and write its artifacts under `round_dir` (see the module docstring)."""
    from accelerate import PartialState

    round_dir = Path(round_dir)
    work = round_dir / PARTIAL
    state = PartialState()
    if state.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    state.wait_for_everyone()
    trainer, base = make_trainer(
        examples, model_settings, train_settings, work / "checkpoints", previous=previous, seed=seed
    )
    start = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - start
    trainer.save_model(str(work / "adapter"))
    losses = [
        {"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]}
        for e in trainer.state.log_history
        if "loss" in e
    ]
    strategy = train_settings.strategy if previous is not None else "from_base"
    if state.is_main_process:
        tokenizer = trainer.processing_class
        tokenizer.save_pretrained(str(work / "adapter"))
        if save_merged:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.config.use_cache = True  # TRL turned the KV cache off for training; generation needs it
            merged.save_pretrained(str(work / "merged"))
            tokenizer.save_pretrained(str(work / "merged"))
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        write_json(
            work / "metrics.json",
            {"losses": losses, "train_runtime_s": runtime, "num_examples": len(examples)},
        )
        config = {
            "base_model": base,
            "original_base": _explicit(model_settings.name_or_path),
            "strategy": strategy,
            "previous_round": str(previous.round_dir) if previous else None,
            "seed": seed,
            "model": model_settings.model_dump(mode="json"),
            "sft": json.loads(trainer.args.to_json_string()),
            "lora": _lora_dict(trainer.model),
            "merged": save_merged,
            "versions": _versions(),
        }
        write_json(work / "train_config.json", config)
        _move_into_place(work, round_dir)
    state.wait_for_everyone()
    nan = float("nan")
    return TrainResult(
        model=load_round_model(round_dir),
        losses=losses,
        first_loss=losses[0]["loss"] if losses else nan,
        final_loss=losses[-1]["loss"] if losses else nan,
        runtime_s=runtime,
    )


def _lora_dict(model) -> dict[str, Any]:
    config = model.peft_config["default"]
    return json.loads(
        json.dumps(config.to_dict(), default=lambda o: sorted(o) if isinstance(o, set) else str(o))
    )


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {m.__name__: m.__version__ for m in (torch, transformers, trl, peft)}


def _move_into_place(work: Path, round_dir: Path) -> None:
    """Un-finish the round, replace each artifact, then write `train_config.json` last."""
    (round_dir / "train_config.json").unlink(missing_ok=True)
    for name in ("adapter", "merged", "metrics.json"):
        target = round_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        if (work / name).exists():
            os.replace(work / name, target)
    os.replace(work / "train_config.json", round_dir / "train_config.json")
    shutil.rmtree(work, ignore_errors=True)


def load_round_model(round_dir: str | Path) -> RoundModel:
    """The finished round in `round_dir`; `StateError` if its training did not finish."""
    round_dir = Path(round_dir)
    path = round_dir / "train_config.json"
    if not path.is_file():
        raise StateError(f"{round_dir} has no finished training (train_config.json missing); train it first")
    config = json.loads(path.read_text(encoding="utf-8"))
    merged = round_dir / "merged"
    return RoundModel(
        round_dir=round_dir,
        adapter_dir=round_dir / "adapter",
        base_model=config["base_model"],
        merged_dir=merged if config.get("merged") and merged.is_dir() else None,
        original_base=config["original_base"],
        strategy=config["strategy"],
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point for `accelerate launch -m loop.train` (see the module docstring)."""
    import argparse

    from loop.data import load_examples

    p = argparse.ArgumentParser(prog="python -m loop.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--round-dir", required=True)
    p.add_argument("--previous")
    p.add_argument("--strategy", default="continue", choices=["continue", "merge_and_stack", "from_base"])
    p.add_argument("--sft", default="{}", help="JSON object of SFTConfig fields")
    p.add_argument("--lora", default="{}", help="JSON object of LoraConfig fields")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    settings = TrainSettings(strategy=a.strategy, sft=json.loads(a.sft), lora=json.loads(a.lora))
    previous = load_round_model(a.previous) if a.previous else None
    result = train_round(
        load_examples(a.data),
        ModelSettings(name_or_path=a.model),
        settings,
        a.round_dir,
        previous=previous,
        seed=a.seed,
    )
    print(f"loss {result.first_loss:.4f} -> {result.final_loss:.4f} in {result.runtime_s:.1f}s")


if __name__ == "__main__":
    main()
