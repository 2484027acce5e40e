"""Candidate generation: naive loop vs pickloop's batched, merged path, in one run on the same data.

Both run on the same device and dtype (`loop.models`: the GPU in bf16 when there is one, else CPU fp32).
Naive: one `generate` call per question per candidate, through the unmerged PEFT adapter.
pickloop: `loop.phases.generate.generate_candidates` (batched, left padding, merged model, inference mode),
including its scoring, dedup and parquet writing. Target: >= 10x questions/s.

    python benchmarks/bench_generate.py                     # tiny model (hidden 128, 4 layers), FAQ data
    python benchmarks/bench_generate.py --questions 64 --naive-questions 16 --k 4 --repeats 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

FAQ = Path(__file__).resolve().parents[1] / "loop" / "demo" / "python_faq.jsonl"
SFT = {"num_train_epochs": 20, "learning_rate": 3e-3, "per_device_train_batch_size": 8, "max_length": 256}
LORA = {"r": 32, "lora_alpha": 32, "modules_to_save": ["lm_head", "embed_tokens"]}


def trained_round(work: Path, epochs: int, seed: int = 0):
    """Tiny model built and LoRA-trained on the FAQ (answers cut to 300 characters)."""
    from loop.config import ModelSettings, TrainSettings
    from loop.data import Example, load_examples
    from loop.demo.tiny_model import TinyModelSpec, build_tiny_model
    from loop.phases.train import train_round

    examples = [
        Example(e.id, [e.messages[0], {**e.messages[1], "content": e.messages[1]["content"][:300].strip()}])
        for e in load_examples(FAQ)
    ]
    base = build_tiny_model(
        [m["content"] for e in examples for m in e.messages], work / "tiny", TinyModelSpec(seed=seed)
    )
    settings = TrainSettings(sft={**SFT, "num_train_epochs": epochs, "disable_tqdm": True}, lora=LORA)
    result = train_round(
        examples, ModelSettings(name_or_path=str(base)), settings, work / "round-1", seed=seed
    )
    return examples, result.model


def naive(examples, round_model, settings, seed: int) -> float:
    """Seconds for one `generate` per question per candidate on base + unmerged adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loop.config import ModelSettings
    from loop.models import device, resolve_dtype
    from loop.phases.generate import candidate_specs

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(round_model.adapter_dir)
    dtype = resolve_dtype(ModelSettings(name_or_path=round_model.base_model))  # as pickloop loads it
    base = AutoModelForCausalLM.from_pretrained(round_model.base_model, dtype=dtype)
    model = PeftModel.from_pretrained(base, str(round_model.adapter_dir)).to(device()).eval()
    for ex in examples:
        prompt = tok.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        for spec in candidate_specs(settings, seed):
            sample = spec.kind == "sample"
            if sample:
                torch.manual_seed(spec.seed)
            with torch.no_grad():
                model.generate(
                    **ids,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=sample,
                    temperature=spec.temperature,
                    top_p=spec.top_p,
                    pad_token_id=tok.pad_token_id,
                )
    return time.perf_counter() - start


def pickloop(examples, round_model, settings, seed: int, out: Path) -> float:
    from loop.phases.generate import generate_candidates

    start = time.perf_counter()
    generate_candidates(examples, round_model.round_dir, settings, out, seed=seed, progress=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    import torch

    from loop.config import GenerateSettings

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--questions", type=int, default=175, help="Questions for pickloop's path.")
    p.add_argument("--naive-questions", type=int, default=24, help="Questions for the (slow) naive path.")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20, help="Training epochs before generating.")
    p.add_argument("--repeats", type=int, default=2, help="Alternating timings; the best of each is kept.")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    settings = GenerateSettings(k=a.k, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        examples, round_model = trained_round(work, a.epochs)
        fast_set, naive_set = examples[: a.questions], examples[: a.naive_questions]
        t_naive, t_fast = float("inf"), float("inf")
        for _ in range(a.repeats):
            t_naive = min(t_naive, naive(naive_set, round_model, settings, seed=0))
            t_fast = min(t_fast, pickloop(fast_set, round_model, settings, 0, work / "candidates.parquet"))
    q_naive, q_fast = len(naive_set) / t_naive, len(fast_set) / t_fast
    print(f"k={a.k} max_new_tokens={a.max_new_tokens} batch_size={a.batch_size} threads={a.threads}")
    print(
        f"naive ({len(naive_set)} questions, generate per question per candidate, unmerged adapter): {q_naive:7.2f} q/s"
    )
    print(
        f"pickloop ({len(fast_set)} questions, batched + merged + inference_mode, with scoring):  {q_fast:7.2f} q/s"
    )
    print(f"ratio: {q_fast / q_naive:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
