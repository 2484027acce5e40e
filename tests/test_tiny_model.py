from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from ml_fixtures import tiny_model  # noqa: F401

from loop.cli import cli
from loop.demo.tiny_model import IM_END, TinyModelSpec, build_tiny_model, train_tokenizer

SAMPLES = [
    "Hello world! It's 3.14, naïve café\n\n  def f(x):\r\n\treturn x  ",
    "e\u0301 (decomposed) vs \u00e9; 日本語 text 1234567; emoji 🐍",
    "<|im_start|>user\nWhy?<|im_end|>\n",
    "   leading spaces and trailing   \n\n\n",
]
TEXTS = ["Why is Python slow?", "Because it is interpreted.", "I don't know; it's 42 maybe."] * 5


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_reload_encodes_identically(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = train_tokenizer(TEXTS * 3, vocab_size=400)
    before = [tokenizer.encode(s) for s in SAMPLES]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "Qwen2Tokenizer"
    assert [reloaded.encode(s) for s in SAMPLES] == before
    assert reloaded.decode(before[0]) == SAMPLES[0]


def test_chat_template_marks_assistant_turns_with_end_token(tiny_model: Path) -> None:  # noqa: F811
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    conv = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A one"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A two"},
    ]
    out = tok.apply_chat_template(conv, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == f"A one{IM_END}A two{IM_END}"
    prompt = tok.apply_chat_template(conv[:4], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == IM_END and tok.pad_token == "<|endoftext|>"


def test_same_seed_same_model_and_cli(tmp_path: Path) -> None:
    spec = TinyModelSpec(hidden=16, layers=1, heads=2, vocab_size=300, seed=3)
    a = build_tiny_model(TEXTS, tmp_path / "a", spec)
    b = build_tiny_model(TEXTS, tmp_path / "b", spec)
    c = build_tiny_model(
        TEXTS, tmp_path / "c", TinyModelSpec(hidden=16, layers=1, heads=2, vocab_size=300, seed=4)
    )
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]
    assert _digest(a)["tokenizer.json"] == _digest(c)["tokenizer.json"]

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "A. " + q}) + "\n" for q in TEXTS[:3]))
    args = ["model", "tiny", "--data", str(data), "--out", str(tmp_path / "cli"), "--hidden", "16"]
    result = CliRunner().invoke(cli, [*args, "--layers", "1", "--heads", "2", "--vocab-size", "300"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Wrote tiny model to {tmp_path / 'cli'}"
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["tie_word_embeddings"]) == (
        16,
        1,
        False,
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temp folders left


def test_cli_rejects_heads_not_dividing_hidden(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["model", "tiny", "--data", "x", "--out", str(tmp_path), "--heads", "3"])
    assert result.exit_code == 2 and "does not divide --hidden" in result.output


def test_loads_offline_as_untied_qwen2(tiny_model: Path) -> None:  # noqa: F811
    code = (
        "import sys; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1]);"
        "print(type(m).__name__, type(t).__name__, m.config.tie_word_embeddings,"
        " m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr())"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model)], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["Qwen2ForCausalLM", "Qwen2Tokenizer", "False", "True"]
