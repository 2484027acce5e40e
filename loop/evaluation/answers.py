"""Each model's greedy answers to the evaluation questions, through the round's own generation code.

Every model answers with the same settings: greedy, the same `max_new_tokens`, prompts cut from the left
to the same budget, batched through `loop.phases.generate`'s KV-cache decoder. One JSON file per model,
written atomically and keyed by the questions, the model's fingerprint and the settings, so a re-run
skips a model whose answers are there and redoes one whose inputs changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from loop.config import EvalSettings, ModelSettings
from loop.evaluation.models import EvalModel
from loop.evaluation.questions import EvalQuestion
from loop.fsutil import write_json

NO_REFERENCE_MAX_NEW_TOKENS = 256


def answers_key(
    model: EvalModel, questions: Sequence[EvalQuestion], max_new_tokens: int, max_length: int
) -> str:
    from loop.phases.generate import _fingerprint

    payload = [
        model.name,
        _fingerprint(model.source),
        [q.to_json() for q in questions],
        max_new_tokens,
        max_length,
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_answers(path: Path, key: str) -> dict[str, str] | None:
    """The stored answers when they were made from the same inputs, else None."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return raw["answers"] if raw.get("key") == key else None


def resolve_max_new_tokens(settings: EvalSettings, questions: Sequence[EvalQuestion], tokenizer) -> int:
    """`eval.max_new_tokens`, with auto resolved from the reference answers as `generate` resolves it."""
    from loop.phases.generate import auto_max_new_tokens

    if settings.max_new_tokens != "auto":
        return int(settings.max_new_tokens)
    refs = [q.reference for q in questions if q.reference]
    if not refs:
        return NO_REFERENCE_MAX_NEW_TOKENS
    return auto_max_new_tokens([len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in refs])


def generate_answers(
    model: EvalModel,
    questions: Sequence[EvalQuestion],
    *,
    model_settings: ModelSettings,
    max_new_tokens: int,
    batch_size: int,
    max_length: int,
    progress: bool = False,
) -> dict[str, str]:
    """question id -> the model's greedy answer (end-of-turn and special tokens dropped, stripped)."""
    import torch

    from loop.config import GenerateSettings
    from loop.models import load_generation_model
    from loop.phases.generate import SampleSpec, _end_ids, _generate_transformers, generation_limits

    settings = model_settings.model_copy(update={"name_or_path": model.source})
    lm, tokenizer = load_generation_model(model.source, settings)
    gen = GenerateSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    budget, max_new = generation_limits(lm, gen, max_length)
    prompts = []
    for q in questions:
        text = tokenizer.apply_chat_template(q.context, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompts.append(ids[-budget:])
    gen = gen.model_copy(update={"max_new_tokens": max_new})
    end_ids = _end_ids(lm, tokenizer)
    keys = [(q.id, 0) for q in questions]
    (generated,) = _generate_transformers(
        lm, tokenizer, prompts, [SampleSpec("greedy")], gen, progress, [max_new] * len(prompts), keys
    )
    out = {
        q.id: tokenizer.decode([t for t in ids if t not in end_ids], skip_special_tokens=True).strip()
        for q, (ids, _) in zip(questions, generated, strict=True)
    }
    del lm
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def write_answers(
    path: Path, key: str, model: EvalModel, answers: dict[str, str], max_new_tokens: int
) -> None:
    write_json(path, {"key": key, "model": model.name, "max_new_tokens": max_new_tokens, "answers": answers})
