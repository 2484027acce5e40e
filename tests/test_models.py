from __future__ import annotations

import sys

import pytest

from loop.config import ModelSettings
from loop.models import precision_defaults, resolve_dtype

SETTINGS = ModelSettings(name_or_path="x")


@pytest.mark.parametrize(
    ("cuda", "bf16", "dtype", "sft"),
    [
        (False, False, "float32", {"use_cpu": True, "bf16": False}),
        (True, True, "bfloat16", {"use_cpu": False, "bf16": True}),
        (True, False, "auto", {"use_cpu": False, "bf16": False}),
    ],
)
def test_device_and_dtype_follow_the_machine(monkeypatch, cuda: bool, bf16: bool, dtype: str, sft) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    resolved = resolve_dtype(SETTINGS)
    assert (resolved if isinstance(resolved, str) else str(resolved).removeprefix("torch.")) == dtype
    assert precision_defaults() == sft
    assert resolve_dtype(SETTINGS.model_copy(update={"dtype": "float16"})) == torch.float16


def test_phase_modules_import_no_ml_library() -> None:
    import subprocess

    code = (
        "import sys, loop.phases.train, loop.phases.generate, loop.models;"
        "print([m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_attn_implementation_reaches_the_model(tmp_path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from loop.models import load_causal_lm

    config = Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    for name in ("eager", "sdpa"):
        model = load_causal_lm(tmp_path, ModelSettings(name_or_path=str(tmp_path), attn_implementation=name))
        assert model.config._attn_implementation == name
