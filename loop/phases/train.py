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

Device and precision follow the machine (`loop.models`): bf16 mixed precision on a GPU that supports it,
`use_cpu` and fp32 on CPU; the YAML does not need to say.

Multi-GPU goes through accelerate, no home-made distribution: every process trains, the trainer saves
the adapter, and only the main process writes pickloop's own files and moves them into place (the
others wait). One recipe:

    accelerate launch --num_processes N -m loop.cli round train CONFIG
    pickloop run CONFIG      # carries on from the trained round: generate, push, ...
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loop.config import ModelSettings, TrainSettings
from loop.console import use_train_progress
from loop.context import RoundContext, world_size
from loop.data import Example, to_dataset
from loop.errors import ConfigError, StateError
from loop.fsutil import write_json
from loop.models import (
    TRAIN_CONFIG,
    RoundModel,
    ensure_generation_markers,
    explicit_path,
    load_causal_lm,
    load_round_model,
    load_tokenizer,
    precision_defaults,
)
from loop.replay import NEEDS_IFD, PoolEntry, Replay, build_pool, choose, example_ifd, write_replay

if TYPE_CHECKING:
    from trl import SFTConfig, SFTTrainer


@dataclass(frozen=True)
class Summary:
    examples: int
    first_loss: float | None = None
    final_loss: float | None = None
    train_runtime_s: float | None = None  # inside trainer.train()
    train_call_s: float | None = None  # the whole TRL/PEFT step: load, train, save
    processes: int = 1  # WORLD_SIZE of the launch that trained the round
    windowed_turns: int = 0  # assistant turns trained in a window of a conversation longer than max_length
    truncated_turns: int = 0  # single turns longer than max_length, trained on their beginning
    trained: int | None = None  # examples this round trained on (fewer than `examples` with train.replay)
    changed: int | None = None  # examples that differ from the previous round's input (always trained)
    replayed: int = 0  # unchanged examples trained again (`train.replay`; listed in replay.jsonl)
    replay_pool: int = 0  # unchanged examples replay chose from


def run(ctx: RoundContext) -> Summary:
    from accelerate import PartialState

    state = PartialState()
    with state.main_process_first():  # round 1 snapshots the input: once, by the main process
        examples = ctx.examples()
    previous = load_round_model(ctx.previous.model) if ctx.previous else None
    ctx.limit_cpu_threads()
    started = time.monotonic()
    replay = replay_for(ctx, examples)
    train_on = list(examples)
    if replay is not None:
        for warning in replay.warnings:
            ctx.report(f"round {ctx.round}: {warning}")
        if state.is_main_process:
            write_replay(replay, ctx.paths.replay)
        train_on = replay.training_examples()
        if not train_on:
            ctx.report(
                f"round {ctx.round}: no example changed and train.replay chose none: training on all "
                f"{len(examples)} again"
            )
            train_on = list(examples)
        ctx.report(
            f"round {ctx.round}: training on {len(replay.changed)} changed examples and "
            f"{len(replay.chosen)} of {replay.pool} unchanged ones ({ctx.config.train.replay.mode})"
        )
    result = train_round(
        train_on,
        ctx.config.model,
        ctx.config.train,
        ctx.paths.model,
        previous=previous,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return Summary(
        examples=len(examples),
        first_loss=result.first_loss,
        final_loss=result.final_loss,
        train_runtime_s=result.runtime_s,
        train_call_s=time.monotonic() - started,
        processes=world_size(),
        windowed_turns=result.windowed_turns,
        truncated_turns=result.truncated_turns,
        trained=len(train_on),
        changed=len(replay.changed) if replay else None,
        replayed=len(replay.chosen) if replay else 0,
        replay_pool=replay.pool if replay else 0,
    )


def replay_for(ctx: RoundContext, examples: Sequence[Example]) -> Replay | None:
    """What `train.replay` trains this round (`loop/replay.py`); None: everything, as in round 1, with
    strategy from_base, and with mode all."""
    from loop.data import load_examples

    settings = ctx.config.train.replay
    if settings.mode == "all" or ctx.round == 1 or ctx.config.train.strategy == "from_base":
        return None
    previous = ctx.run.round(1).input if ctx.round == 2 else ctx.state().round_output(ctx.round - 2)
    changed, pool = build_pool(load_examples(previous), examples, ctx.round - 1)
    if pool and settings.mode in NEEDS_IFD:
        pool = score_pool(ctx, pool)
    chosen = choose(pool, settings.mode, k=settings.k, fraction=settings.fraction, seed=ctx.seed)
    return dataclasses.replace(chosen, changed=changed)


def score_pool(ctx: RoundContext, pool: Sequence[PoolEntry]) -> list[PoolEntry]:
    """The pool with each version's IFD under `train.replay.scorer`; the previous round's
    `scores.parquet` answers for its own versions when the scorer is `round`."""
    from loop.models import load_generation_model
    from loop.phases.generate import DEFAULT_MAX_LENGTH
    from loop.phases.score import ifd_scores, load_scores

    scorer = ctx.config.train.replay.scorer
    ifd: dict[int, float | None] = {}
    todo = list(range(len(pool)))
    if scorer == "round":
        source: str | Path = ctx.previous.model  # type: ignore[union-attr]
        if ctx.previous.scores.exists():  # type: ignore[union-attr]
            scored = {(t.example_id, t.message_index): t.ifd_round for t in load_scores(ctx.previous.scores)}  # type: ignore[union-attr]
            for i in [i for i in todo if pool[i].source_round == ctx.round - 1]:
                ifd[i] = example_ifd(pool[i].example, scored)
            todo = [i for i in todo if i not in ifd]
    else:
        source = ctx.config.model.name_or_path if scorer == "base" else scorer
    if todo:
        try:
            model, tokenizer = load_generation_model(source, ctx.config.model)
        except Exception as exc:  # a scorer that cannot load is the config's mistake: say which key
            raise ctx.config.error(
                f"cannot load the replay scorer {source} ({type(exc).__name__}: {exc})", "train.replay.scorer"
            ) from None
        renamed = [Example(str(i), pool[i].example.messages) for i in todo]  # versions share ids
        turns = ifd_scores(model, tokenizer, renamed, ctx.config.train.sft.get("max_length", DEFAULT_MAX_LENGTH))
        del model
        for ex in renamed:
            ifd[int(ex.id)] = example_ifd(ex, turns)
    return [dataclasses.replace(e, ifd=ifd.get(i)) for i, e in enumerate(pool)]


PARTIAL = ".train.partial"
__all__ = ["RoundModel", "Summary", "TrainResult", "load_round_model", "run", "train_round"]
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
    "bias": "none",
    "task_type": "CAUSAL_LM",
}


@dataclass(frozen=True)
class TrainResult:
    model: RoundModel
    losses: list[dict[str, float]]
    first_loss: float
    final_loss: float
    runtime_s: float
    windowed_turns: int = 0
    truncated_turns: int = 0


def _sft_defaults() -> dict[str, Any]:
    return {
        "num_train_epochs": 3,
        "learning_rate": 2e-4,
        "per_device_train_batch_size": 8,
        "max_length": 1024,
        "assistant_only_loss": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        **precision_defaults(),
        "activation_checkpointing": False,
    }


def build_sft_config(
    settings: TrainSettings, output_dir: str | Path, seed: int, *, later_round: bool = False
) -> SFTConfig:
    """`later_round`: the round starts from the previous round's model, so `sft_later_rounds` applies."""
    from trl import SFTConfig

    later = settings.sft_later_rounds if later_round else {}
    kwargs = {"seed": seed, "data_seed": seed, **_sft_defaults(), **settings.sft, **later}
    if settings.batch_tokens is not None:  # one packed, padding-free row of batch_tokens tokens per step
        kwargs.update(
            packing=True,
            packing_strategy="bfd",
            per_device_train_batch_size=1,
            max_length=settings.batch_tokens,
        )
    if "activation_checkpointing" not in {f.name for f in dataclasses.fields(SFTConfig)}:
        kwargs["gradient_checkpointing"] = kwargs.pop("activation_checkpointing")
    try:
        return SFTConfig(output_dir=str(output_dir), **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key="train.sft") from exc


def window_length(settings: TrainSettings, *, later_round: bool = False) -> int:
    """Longest training row: `sft.max_length`, or the step's token budget when that is smaller."""
    later = settings.sft_later_rounds if later_round else {}
    length = {**_sft_defaults(), **settings.sft, **later}["max_length"]
    return min(length, settings.batch_tokens) if settings.batch_tokens else length


def build_lora_config(settings: TrainSettings):
    from peft import LoraConfig

    try:
        return LoraConfig(**{**LORA_DEFAULTS, **settings.lora})
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key="train.lora") from exc


def _base_for(model_settings: ModelSettings, strategy: str, previous: RoundModel | None) -> str:
    if previous is None or strategy == "from_base":
        return explicit_path(model_settings.name_or_path)
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
    progress: bool = True,
) -> tuple[SFTTrainer, str]:
    """The `SFTTrainer` for one round and the path of the model its adapter applies to."""
    from peft import PeftModel
    from transformers import set_seed
    from trl import SFTTrainer

    strategy = train_settings.strategy if previous is not None else "from_base"
    base = _base_for(model_settings, strategy, previous)
    args = build_sft_config(train_settings, output_dir, seed, later_round=strategy != "from_base")
    tokenizer = load_tokenizer(base, model_settings)
    if args.assistant_only_loss and args.chat_template_path is None:
        ensure_generation_markers(tokenizer)
    set_seed(seed)
    model = load_causal_lm(base, model_settings)
    peft_config = None
    if strategy == "continue":
        model = PeftModel.from_pretrained(model, str(previous.adapter_dir), is_trainable=True)
    else:
        peft_config = build_lora_config(train_settings)
    windows = None
    template_path = args.chat_template_path
    if (
        args.assistant_only_loss
        and args.max_length
        and (template_path is None or template_path.endswith(".jinja"))
    ):
        if template_path is not None:
            tokenizer.chat_template = Path(template_path).read_text(encoding="utf-8")
        length = window_length(train_settings, later_round=strategy != "from_base")
        windows = window_examples(examples, tokenizer, length)
        from datasets import Dataset

        dataset = Dataset.from_list(windows.rows)
        # the loss mask travels in `assistant_masks` (TRL applies it to pre-tokenized rows) and TRL
        # refuses the flag on them; train_config.json still records assistant_only_loss: true
        args.assistant_only_loss = False
    else:  # TRL tokenizes (and truncates: later turns of a long conversation are lost)
        dataset = to_dataset(examples).select_columns(["messages"])
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    # one bar with the latest loss, no log dicts printed as lines (none when the config sets disable_tqdm)
    use_train_progress(trainer, disable=not progress or bool(train_settings.sft.get("disable_tqdm")))
    trainer.pickloop_windows = windows
    return trainer, base


@dataclass(frozen=True)
class Windows:
    """Tokenized training rows (`input_ids`, `assistant_masks`) with every assistant turn in one row."""

    rows: list[dict[str, list[int]]]
    windowed_turns: int = 0  # trained in a window of a conversation longer than max_length
    truncated_turns: int = 0  # a single turn (with its question) longer than max_length: its end is cut


def _render(tokenizer, messages) -> tuple[list[int], list[int]]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(out["input_ids"]), list(out["assistant_masks"])


def _window(tokenizer, messages, start: int, end: int, done: int, system: bool):
    """Tokens of messages[start..end] (after the system message when `system`), with the loss only on
    the assistant turns after index `done` (earlier ones are context, trained in their own window)."""
    picked = list(range(start, end + 1))
    if system and start > 0:
        picked = [0, *picked]
    ids, mask = _render(tokenizer, [messages[i] for i in picked])
    assistants = [i for i in picked if messages[i]["role"] == "assistant"]
    run, previous = -1, 0
    for pos, bit in enumerate(mask):
        if bit and not previous:
            run += 1
        if bit and run < len(assistants) and assistants[run] <= done:
            mask[pos] = 0
        previous = bit
    return ids, mask


def window_examples(examples: Sequence[Example], tokenizer, max_length: int) -> Windows:
    """One row per conversation that fits in `max_length` tokens; a longer one is split into windows,
    each training the next assistant turns that fit with as much preceding context as fits (earliest
    turns dropped first, the system message kept when it fits)."""
    rows, windowed, truncated = [], 0, 0
    for ex in examples:
        msgs = ex.messages
        ids, mask = _render(tokenizer, msgs)
        if len(ids) <= max_length:
            rows.append({"input_ids": ids, "assistant_masks": mask})
            continue
        system = msgs[0]["role"] == "system"
        done = -1
        for _ in range(len(msgs)):
            remaining = [t for t in ex.assistant_turns() if t > done]
            if not remaining:
                break
            start = done + 1
            best = None
            for end in remaining:  # the most turns that fit with their own questions
                for with_system in (True, False) if system else (False,):
                    ids, mask = _window(tokenizer, msgs, start, end, done, with_system)
                    if len(ids) <= max_length:
                        break
                if len(ids) > max_length:
                    break
                best = (end, with_system, ids, mask)
            if best is None:  # one turn alone is too long: train its beginning
                ids, mask = _window(tokenizer, msgs, start, remaining[0], done, False)
                rows.append({"input_ids": ids[:max_length], "assistant_masks": mask[:max_length]})
                truncated += 1
                done = remaining[0]
                continue
            end, with_system, ids, mask = best
            for earlier in range(start - 1, -1, -1):  # more context while it fits, from user turns
                if msgs[earlier]["role"] != "user":
                    continue
                more = _window(tokenizer, msgs, earlier, end, done, with_system)
                if len(more[0]) > max_length:
                    break
                ids, mask = more
            rows.append({"input_ids": ids, "assistant_masks": mask})
            windowed += sum(1 for t in remaining if t <= end)
            done = end
    return Windows(rows, windowed, truncated)


def train_round(
    examples: Sequence[Example],
    model_settings: ModelSettings,
    train_settings: TrainSettings,
    round_dir: str | Path,
    *,
    previous: RoundModel | None = None,
    seed: int = 0,
    save_merged: bool = True,
    progress: bool = True,
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
        examples,
        model_settings,
        train_settings,
        work / "checkpoints",
        previous=previous,
        seed=seed,
        progress=progress,
    )
    windows = trainer.pickloop_windows
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
            "original_base": explicit_path(model_settings.name_or_path),
            "strategy": strategy,
            "previous_round": str(previous.round_dir) if previous else None,
            "seed": seed,
            "model": model_settings.model_dump(mode="json"),
            "sft": {
                **json.loads(trainer.args.to_json_string()),
                "assistant_only_loss": trainer.args.assistant_only_loss or windows is not None,
            },
            "lora": _lora_dict(trainer.model),
            "merged": save_merged,
            "versions": _versions(),
        }
        write_json(work / TRAIN_CONFIG, config)
        _move_into_place(work, round_dir)
    state.wait_for_everyone()
    nan = float("nan")
    return TrainResult(
        model=load_round_model(round_dir),
        losses=losses,
        first_loss=losses[0]["loss"] if losses else nan,
        final_loss=losses[-1]["loss"] if losses else nan,
        runtime_s=runtime,
        windowed_turns=windows.windowed_turns if windows else 0,
        truncated_turns=windows.truncated_turns if windows else 0,
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
    (round_dir / TRAIN_CONFIG).unlink(missing_ok=True)
    for name in ("adapter", "merged", "metrics.json"):
        target = round_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        if (work / name).exists():
            os.replace(work / name, target)
    os.replace(work / TRAIN_CONFIG, round_dir / TRAIN_CONFIG)
    shutil.rmtree(work, ignore_errors=True)
