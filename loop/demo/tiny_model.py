"""A tiny Qwen2 model built locally, so tests and the demo run offline in seconds on 2 CPU cores.

No model hub is reachable here, so the model is made from the domain data itself: a byte-level BPE
tokenizer trained on the texts, a ChatML chat template with `{% generation %}` markers (TRL's
`assistant_only_loss` needs them, with the end-of-turn token inside), and a small Qwen2 config with
random weights. Embeddings are untied: with tied random embeddings LoRA alone only produces junk.

The tokenizer uses Qwen2's exact pre-tokenization (NFC, `PRETOKENIZE_REGEX` split, ByteLevel) because
`AutoTokenizer` rebuilds a `qwen2` tokenizer as `Qwen2Tokenizer` from vocab and merges; any other
pre-tokenization would encode differently after a reload.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loop.fsutil import atomic_path
from loop.models import CHATML_TEMPLATE

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"


@dataclass(frozen=True)
class TinyModelSpec:
    """Size of the tiny model. The defaults learn ~300 QA pairs in under a minute on 2 cores."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    vocab_size: int = 4000
    max_positions: int = 2048
    seed: int = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE with Qwen2's pre-tokenization; returns a `Qwen2Tokenizer`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    vocab = bpe.get_vocab(with_added_tokens=True)
    merges = _merges(bpe)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=IM_END, pad_token=PAD, unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(IM_START, special=True)]})
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def _merges(bpe) -> list[tuple[str, str]]:
    import json

    merges = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def build_tiny_model(texts: Iterable[str], out: str | Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write tokenizer + random-weight untied Qwen2 model to `out` (atomically); deterministic per seed."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(texts, spec.vocab_size)
    if spec.hidden % spec.heads:
        raise ValueError(f"hidden ({spec.hidden}) must be a multiple of heads ({spec.heads})")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * 2,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        bos_token_id=None,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    with atomic_path(out) as tmp, _quiet():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No "Writing model shards" bar for a file that takes milliseconds to write."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def build_from_data(data: str | Path, out: str | Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build the tiny model from a dataset's texts (every message of every conversation)."""
    from loop.data import load_examples

    texts = [m["content"] for ex in load_examples(data) for m in ex.messages]
    return build_tiny_model(texts, out, spec)
