"""Shared ML fixtures: a tiny model and trained rounds, built once per session.

Test modules import the fixtures they use (`from ml_fixtures import tiny_model  # noqa: F401`). Pytest
registers an imported fixture once per importing module, so the expensive work is memoised here in
`_CACHE` and every module gets the same folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loop.config import ModelSettings, TrainSettings
from loop.data import Example, load_examples

FAQ = Path(__file__).resolve().parents[1] / "loop" / "demo" / "python_faq.jsonl"
_CACHE: dict[str, Any] = {}

# Settings that make the 32-hidden, 2-layer model memorise ~10 short conversations in about a second.
FAST_SFT = {
    "num_train_epochs": 40,
    "learning_rate": 1e-2,
    "lr_scheduler_type": "constant",
    "per_device_train_batch_size": 4,
    "max_length": 256,
    "disable_tqdm": True,
}
FAST_LORA = {"r": 32, "lora_alpha": 32, "modules_to_save": ["lm_head", "embed_tokens"]}


def fast_settings(strategy: str = "continue", **sft: Any) -> TrainSettings:
    return TrainSettings(strategy=strategy, sft={**FAST_SFT, **sft}, lora=FAST_LORA)


def _limit_threads() -> None:
    import torch

    torch.set_num_threads(1)


def qa_examples(n: int = 8) -> list[Example]:
    """The first `n` FAQ pairs with answers cut to 80 characters (short enough to memorise fast)."""
    out = []
    for ex in load_examples(FAQ)[:n]:
        question, answer = ex.messages
        out.append(
            Example(ex.id, [question, {"role": "assistant", "content": answer["content"][:80].strip()}])
        )
    return out


def multi_turn_examples() -> list[Example]:
    return [
        Example(
            "mt-1",
            [
                {"role": "system", "content": "You answer questions about Python."},
                {"role": "user", "content": "Is Python compiled?"},
                {"role": "assistant", "content": "It is compiled to bytecode."},
                {"role": "user", "content": "Where is the bytecode stored?"},
                {"role": "assistant", "content": "In .pyc files under __pycache__."},
            ],
        ),
        Example(
            "mt-2",
            [
                {"role": "user", "content": "What is a list?"},
                {"role": "assistant", "content": "A mutable sequence."},
                {"role": "user", "content": "And a tuple?"},
                {"role": "assistant", "content": "An immutable sequence."},
            ],
        ),
    ]


def train_examples() -> list[Example]:
    return qa_examples(8) + multi_turn_examples()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-hidden, 2-layer tiny model whose tokenizer was trained on the whole FAQ."""
    if "tiny" not in _CACHE:
        from loop.demo.tiny_model import TinyModelSpec, build_tiny_model

        _limit_threads()
        texts = [m["content"] for ex in load_examples(FAQ) for m in ex.messages]
        texts += [m["content"] for ex in multi_turn_examples() for m in ex.messages]
        out = tmp_path_factory.mktemp("models") / "tiny"
        _CACHE["tiny"] = build_tiny_model(
            texts, out, TinyModelSpec(hidden=32, layers=2, heads=2, vocab_size=1000)
        )
    return _CACHE["tiny"]


@pytest.fixture(scope="session")
def trained_round(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """Round 1 trained to convergence on `train_examples()`; a `TrainResult`."""
    if "round1" not in _CACHE:
        from loop.phases.train import train_round

        _limit_threads()
        round_dir = tmp_path_factory.mktemp("run") / "round-1"
        _CACHE["round1"] = train_round(
            train_examples(), ModelSettings(name_or_path=str(tiny_model)), fast_settings(), round_dir, seed=0
        )
    return _CACHE["round1"]


SEED_DOCS = Path(__file__).resolve().parent / "data" / "seed_docs"
SEED_PROMPT = "Passage from {title}:\n{chunk}\nWrite {n} question-answer pairs.\n"
# (question, answer) the seed round learns to write for each chunk of SEED_DOCS (64-token chunks of the
# tiny tokenizer, in chunk order): chunk 2 nearly repeats chunk 1's question, chunk 4's answer is not
# in its chunk (ungrounded).
SEED_TARGETS = [
    ("How many batteries does a gadget use?", "Two batteries."),
    ("What are widgets made of?", "Brass."),
    ("What are the widgets made of?", "Brass, with three gears."),
    ("How do you clean a widget?", "With a dry cloth."),
    ("When does the factory open?", "Purple elephants sing."),
]


@pytest.fixture(scope="session")
def seed_round(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """(round dir, prompt template): a round trained on the tiny model to answer SEED_PROMPT for each
    chunk of SEED_DOCS with its SEED_TARGETS pair as `Q: ...` / `A: ...` (the seed-data tests need a
    model whose output parses; this one also exercises a round's adapter as the generator)."""
    if "seed_round" not in _CACHE:
        from loop.phases.train import train_round
        from loop.seed.backends import LocalBackend
        from loop.seed.chunking import chunk_documents
        from loop.seed.documents import read_documents
        from loop.seed.prompts import load_template

        _limit_threads()
        prompt = tmp_path_factory.mktemp("prompt") / "prompt.txt"
        prompt.write_text(SEED_PROMPT, encoding="utf-8")
        template = load_template(prompt)
        backend = LocalBackend(tiny_model, max_new_tokens=8)
        chunks = chunk_documents(read_documents([SEED_DOCS]), 64, 8, backend.count_tokens)
        assert len(chunks) == len(SEED_TARGETS)
        examples = [
            Example(
                f"t{i}",
                [
                    {"role": "user", "content": template.render(c.title, c.text, 1)},
                    {"role": "assistant", "content": f"Q: {q}\nA: {a}"},
                ],
            )
            for i, (c, (q, a)) in enumerate(zip(chunks, SEED_TARGETS, strict=True))
        ]
        round_dir = tmp_path_factory.mktemp("seed-run") / "round-1"
        settings = fast_settings(max_length=384, num_train_epochs=60)
        train_round(
            examples, ModelSettings(name_or_path=str(tiny_model)), settings, round_dir, seed=0, progress=False
        )
        _CACHE["seed_round"] = (round_dir, template)
    return _CACHE["seed_round"]


def greedy_answers(source: Path, examples: list[Example]) -> list[str]:
    """Greedy answer to each example's first question (plain `generate`, independent of loop.generate)."""
    import torch

    from loop.models import load_generation_model

    model, tokenizer = load_generation_model(source)
    prompts = [
        tokenizer.apply_chat_template(ex.messages[:-1], tokenize=False, add_generation_prompt=True)
        for ex in examples
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=48)
    return [
        t.strip()
        for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    ]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path
