"""Loading models and tokenizers, the chat template, and where (device) and how (dtype) they run.

Used by the train and generate phases (and the demo's tiny model, for the template). Heavy libraries
are imported inside functions: importing this module loads no torch.

Device and dtype are decided at run time, never in the YAML: on a CUDA machine the model runs on the
GPU, `dtype: auto` loads weights as bf16 when the GPU supports it (an fp32 checkpoint like the tiny
model's included) and training uses bf16 mixed precision; on CPU everything is fp32 (bf16 on CPU is
slower, measured) and training sets `use_cpu`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop.config import ModelSettings
from loop.errors import ConfigError, StateError

TRAIN_CONFIG = "train_config.json"
"""Written last by a training round: a round folder without it is unfinished."""

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>' + '\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML with generation markers; renders exactly like the plain ChatML template of Qwen models."""


@dataclass(frozen=True)
class RoundModel:
    """A finished training round: its adapter, the model the adapter applies to, the merged copy."""

    round_dir: Path
    adapter_dir: Path
    base_model: str
    merged_dir: Path | None
    original_base: str
    strategy: str


def load_round_model(round_dir: str | Path) -> RoundModel:
    """The finished round in `round_dir`; `StateError` if its training did not finish."""
    round_dir = Path(round_dir)
    path = round_dir / TRAIN_CONFIG
    if not path.is_file():
        raise StateError(f"{round_dir} has no finished training ({TRAIN_CONFIG} missing); train it first")
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


def explicit_path(path: str | Path) -> str:
    """Absolute path for a local folder, the id itself for a Hub model: never a relative path."""
    p = Path(path)
    return str(p.resolve()) if p.exists() else str(path)


# ---------------------------------------------------------------------------------------------- device


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def bf16_available() -> bool:
    """bf16 on a CUDA GPU that supports it; never on CPU (slower there, measured)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def device():
    """The device a single process generates on: this process's GPU under a distributed launch."""
    import os

    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))


def resolve_dtype(model_settings: ModelSettings):
    """`dtype: auto`: bf16 on a GPU that supports it (whatever the checkpoint's dtype), the checkpoint's
    own dtype on other GPUs, fp32 on CPU. An explicit dtype is used as given."""
    import torch

    if model_settings.dtype != "auto":
        return getattr(torch, model_settings.dtype)
    if bf16_available():
        return torch.bfloat16
    return "auto" if torch.cuda.is_available() else torch.float32


def precision_defaults() -> dict[str, Any]:
    """`SFTConfig` fields that follow the machine: CPU-only, or bf16 mixed precision on a GPU."""
    return {"use_cpu": not cuda_available(), "bf16": bf16_available()}


# ---------------------------------------------------------------------------------------------- loading


def load_causal_lm(path: str | Path, model_settings: ModelSettings):
    from transformers import AutoModelForCausalLM

    extra = {"attn_implementation": model_settings.attn_implementation} if model_settings.attn_implementation else {}
    return AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=resolve_dtype(model_settings),
        trust_remote_code=model_settings.trust_remote_code,
        **extra,
    )


def load_tokenizer(path: str | Path, model_settings: ModelSettings, padding_side: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=model_settings.trust_remote_code)
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def context_length(model) -> int | None:
    """The model's context (`max_position_embeddings`), None when its config does not say."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None


def load_generation_model(source: str | Path, model_settings: ModelSettings | None = None):
    """Model + tokenizer for generation from a round dir (merged, or base+adapter merged in memory)
    or a plain model folder / Hub id. Left padding, eval mode, on the GPU when there is one."""
    settings = model_settings or ModelSettings(name_or_path=str(source))
    path = Path(source)
    if (path / TRAIN_CONFIG).is_file():
        rm = load_round_model(path)
        if rm.merged_dir is not None:
            model = load_causal_lm(rm.merged_dir, settings)
        else:
            from peft import PeftModel

            base = load_causal_lm(rm.base_model, settings)
            model = PeftModel.from_pretrained(base, str(rm.adapter_dir)).merge_and_unload()
        tok_path = rm.adapter_dir
    else:
        model, tok_path = load_causal_lm(source, settings), source
    tokenizer = load_tokenizer(tok_path, settings, padding_side="left")
    # TRL turns the KV cache off for training and that setting is saved with the model; generating
    # without it recomputes the whole sequence at every step (5-10x slower, measured).
    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.use_cache = True
    model.to(device()).eval()
    return model, tokenizer


# ---------------------------------------------------------------------------------------------- template


def ensure_generation_markers(tokenizer) -> None:
    """Give the tokenizer a chat template with `{% generation %}` markers, or explain what to do."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

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
    if patched is None:
        raise ConfigError(
            "the chat template has no {% generation %} markers and pickloop cannot add them; give a template "
            "with markers (train.sft.chat_template_path) or set train.sft.assistant_only_loss: false",
            key="train.sft.assistant_only_loss",
        )
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
