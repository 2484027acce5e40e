"""Device check: pickloop's train and generate phases on a real-size model, against the naive baselines.

No network: the model is a randomly initialised Qwen2.5-0.5B-Instruct architecture (494M parameters,
vocabulary 151,936) built from its config; the tokenizer is the project's tiny BPE trained on the demo
FAQ (ids beyond its vocabulary decode to nothing, which changes no timing). It runs

- train: `loop.phases.train.train_round` on 512 examples (1 epoch, pickloop's defaults; and with
  `train.batch_tokens`, packed padding-free steps), and a bare TRL `SFTTrainer` with the same settings
  as the baseline;
- generate: `loop.phases.generate.generate_candidates` on 128 questions x K=4 x 128 new tokens at 128
  and 256 rows per batch; the naive baseline (one HF `generate` per question per candidate) on a few
  questions; and plain HF `generate` on the same rows with the default cache and with
  `cache_implementation="static"` (compiled by transformers on CUDA) as anchors. The end-of-sequence
  token is suppressed in the anchors (`min_new_tokens`); pickloop's phase runs unchanged (with this
  vocabulary a random model emits it almost never: the tokens actually produced are counted).

and writes `gpu_check.json` to `--out DIR` with tokens/s, step times, the % of the bandwidth bound
(parameter + KV-cache bytes read per decoding step / the device's memory bandwidth), training MFU
(6 x parameters x tokens / time / peak bf16 FLOPS) and peak memory, then prints ratios.

    python benchmarks/gpu_check.py --out results/          # one H200: a few minutes
    python benchmarks/gpu_check.py --tiny --out /tmp/x     # tiny configuration, CPU, seconds (the test)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FAQ = Path(__file__).resolve().parents[1] / "loop" / "demo" / "python_faq.jsonl"

# name substring (first match wins) -> (memory bandwidth TB/s, dense bf16 TFLOPS), from the vendors' sheets
KNOWN_DEVICES: list[tuple[str, float, float]] = [
    ("GH200", 4.0, 989.0),
    ("H200", 4.8, 989.0),
    ("H100 NVL", 3.9, 835.0),
    ("H100 PCIe", 2.0, 756.0),
    ("H100", 3.35, 989.0),
    ("H800", 3.35, 989.0),
    ("A100-SXM4-80GB", 2.039, 312.0),
    ("A100 80GB PCIe", 1.935, 312.0),
    ("A100", 1.555, 312.0),
    ("L40S", 0.864, 362.0),
    ("L40", 0.864, 181.0),
    ("L4", 0.3, 121.0),
    ("A10G", 0.6, 70.0),
    ("A10", 0.6, 125.0),
    ("RTX 4090", 1.008, 165.0),
    ("RTX 3090", 0.936, 71.0),
    ("V100", 0.9, 125.0),
    ("T4", 0.32, 65.0),
]


@dataclass(frozen=True)
class Sizes:
    """One check's configuration: the model and the workload."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    train_examples: int
    questions: int
    k: int
    max_new_tokens: int
    rows: tuple[int, ...]
    naive_questions: int
    train_batch_tokens: int  # train.batch_tokens of the packed (padding-free) training variant


REAL = Sizes(896, 4864, 24, 14, 2, 151_936, 512, 128, 4, 128, (128, 256), 2, 4096)
TINY = Sizes(64, 128, 2, 4, 2, 4000, 16, 8, 4, 12, (8, 16), 1, 2048)


# ---------------------------------------------------------------------------------------------- setup


def build_model(sizes: Sizes, out: Path, texts: list[str]) -> Path:
    """Random-weight Qwen2 with Qwen2.5-0.5B-Instruct's layout (tied embeddings, GQA) + the tiny tokenizer."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from loop.demo.tiny_model import IM_END, PAD, train_tokenizer

    tokenizer = train_tokenizer(texts, 4000)
    config = Qwen2Config(
        vocab_size=max(sizes.vocab, len(tokenizer)),
        hidden_size=sizes.hidden,
        intermediate_size=sizes.intermediate,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.kv_heads,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        bos_token_id=None,
        use_cache=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)  # saved like the real checkpoint
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def examples(n: int):
    """`n` FAQ conversations (cycled, with distinct ids)."""
    from loop.data import Example, load_examples

    faq = load_examples(FAQ)
    return [Example(f"q{i}", faq[i % len(faq)].messages) for i in range(n)]


def device_info(bandwidth: float | None, tflops: float | None) -> dict:
    """Name, memory bandwidth (bytes/s) and peak bf16 FLOPS: given, from the table, or None."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        known = next(((bw, fl) for key, bw, fl in KNOWN_DEVICES if key.lower() in name.lower()), (None, None))
    else:
        name, known = (
            f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            (None, None),
        )
    bw = bandwidth if bandwidth is not None else known[0]
    fl = tflops if tflops is not None else known[1]
    return {
        "name": name,
        "bandwidth_bytes_s": bw * 1e12 if bw else None,
        "peak_flops": fl * 1e12 if fl else None,
        "from_table": bandwidth is None and known[0] is not None,
        "torch": torch.__version__,
    }


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float:
    """Peak GPU memory allocated since the last reset, or the process's peak RSS on CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class KV:
    """Bytes that one decoding step reads: all parameters once, plus every live row's KV cache."""

    def __init__(self, model) -> None:
        cfg = model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        elem = next(model.parameters()).element_size()
        self.params = sum(p.numel() for p in model.parameters())
        self.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * elem

    def batch_bytes(self, rows: int, width: int, steps: int) -> float:
        """Bytes read over `steps` decoding steps of `rows` rows after a `width`-token prompt."""
        return steps * self.param_bytes + rows * self.per_token * (steps * width + steps * (steps - 1) / 2)


def _summary(tokens: int, seconds: float, steps: int, bytes_read: float, device: dict, **extra) -> dict:
    bound = bytes_read / device["bandwidth_bytes_s"] if device["bandwidth_bytes_s"] else None
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "steps": steps,
        "ms_per_step": 1000 * seconds / max(1, steps),
        "bandwidth_bound_s": bound,
        "pct_of_bandwidth_bound": 100 * bound / seconds if bound else None,
        "peak_memory_gib": _peak_gib(),
        **extra,
    }


# ---------------------------------------------------------------------------------------------- train


def check_train(sizes: Sizes, base: Path, work: Path, device: dict, params: int) -> dict:
    """pickloop's `train_round` and a bare TRL `SFTTrainer` (same settings) on the same examples."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from loop.config import ModelSettings, TrainSettings
    from loop.data import to_dataset
    from loop.models import load_tokenizer, resolve_dtype
    from loop.phases.train import LORA_DEFAULTS, _sft_defaults, train_round, window_examples

    data = examples(sizes.train_examples)
    settings = ModelSettings(name_or_path=str(base))
    sft = {"num_train_epochs": 1, "disable_tqdm": True}
    tokenizer = load_tokenizer(base, settings)
    max_length = _sft_defaults()["max_length"]
    tokens = sum(len(r["input_ids"]) for r in window_examples(data, tokenizer, max_length).rows)
    out = {}

    def record(name: str, seconds: float, steps: int) -> None:
        flops = 6 * params * tokens
        out[name] = {
            "examples": len(data),
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "steps": steps,
            "s_per_step": seconds / max(1, steps),
            "mfu_pct": 100 * flops / seconds / device["peak_flops"] if device["peak_flops"] else None,
            "peak_memory_gib": _peak_gib(),
        }

    for name, budget in (("pickloop", None), ("pickloop_batch_tokens", sizes.train_batch_tokens)):
        _reset_peak()
        train = TrainSettings(sft=sft, batch_tokens=budget)
        result = train_round(data, settings, train, work / name, seed=0, progress=False)
        steps = max((loss["step"] for loss in result.losses), default=1)
        record(name, result.runtime_s, steps)
        out[name]["batch_tokens"] = budget

    _reset_peak()
    args = SFTConfig(output_dir=str(work / "bare"), seed=0, **{**_sft_defaults(), **sft})
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=resolve_dtype(settings))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(data).select_columns(["messages"]),
        processing_class=load_tokenizer(base, settings),
        peft_config=LoraConfig(**LORA_DEFAULTS),
    )
    start = time.perf_counter()
    trainer.train()
    _sync()
    record("trl_baseline", time.perf_counter() - start, trainer.state.global_step)
    del trainer, model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


# ---------------------------------------------------------------------------------------------- generate


def _prompts(tokenizer, data) -> list[list[int]]:
    return [
        tokenizer(
            tokenizer.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )["input_ids"]
        for ex in data
    ]


def check_pickloop(
    sizes: Sizes, base: Path, work: Path, rows: int, kv: KV, device: dict, compile: bool = False
) -> dict:
    """`generate_candidates` as the phase runs it; each decoding batch is timed (synchronised).
    `steady_*` leaves the first batch out (with `compile`, it pays the compilation)."""
    from loop.config import GenerateSettings
    from loop.phases import generate as phase

    batches: list[tuple[int, int, int, int, float]] = []  # rows, width, steps, tokens, seconds
    decode = phase._decode

    def timed(model, prompts, *args, **kwargs):
        _sync()
        start = time.perf_counter()
        out = decode(model, prompts, *args, **kwargs)
        _sync()
        lengths = [len(tokens) for tokens, _ in out]
        batches.append(
            (len(prompts), max(map(len, prompts)), max(lengths), sum(lengths), time.perf_counter() - start)
        )
        return out

    settings = GenerateSettings(
        k=sizes.k, max_new_tokens=sizes.max_new_tokens, batch_size=rows // sizes.k, compile=compile
    )
    _reset_peak()
    phase._decode = timed
    try:
        start = time.perf_counter()
        phase.generate_candidates(
            examples(sizes.questions), base, settings, work / f"candidates-{rows}.parquet", progress=False
        )
        _sync()
        total = time.perf_counter() - start
    finally:
        phase._decode = decode
    seconds = sum(b[4] for b in batches)
    steady = batches[1:] or batches
    steady_s = sum(b[4] for b in steady)
    return _summary(
        sum(b[3] for b in batches),
        seconds,
        sum(b[2] for b in batches),
        sum(kv.batch_bytes(r, w, s) for r, w, s, _, _ in batches),
        device,
        rows=rows,
        batches=len(batches),
        phase_seconds=total,  # with model loading, scoring the current answers and writing parquet
        steady_tokens_per_s=sum(b[3] for b in steady) / steady_s,
        steady_ms_per_step=1000 * steady_s / max(1, sum(b[2] for b in steady)),
        compile=compile,
    )


def check_hf(
    sizes: Sizes, model, tokenizer, rows: int, kv: KV, device: dict, static: bool, end_ids: list[int]
) -> dict:
    """Plain `generate` on the same prompts x K, `rows` rows a batch, sampling (top_p 0.95), EOS off."""
    import torch

    prompts = [p for p in _prompts(tokenizer, examples(sizes.questions)) for _ in range(sizes.k)]
    prompts.sort(key=len, reverse=True)
    extra = {"cache_implementation": "static"} if static else {}
    batches = [prompts[i : i + rows] for i in range(0, len(prompts), rows)]

    def run(batch):
        enc = tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=0.95,
                max_new_tokens=sizes.max_new_tokens,
                min_new_tokens=sizes.max_new_tokens,
                eos_token_id=end_ids,
                pad_token_id=tokenizer.pad_token_id,
                **extra,
            )
        return enc["input_ids"].shape[1], out.shape[1] - enc["input_ids"].shape[1]

    _reset_peak()
    _sync()
    start = time.perf_counter()
    run(batches[0])  # warm-up (compilation with the static cache); timed separately
    _sync()
    warmup = time.perf_counter() - start
    timed = batches[1:] or batches
    start = time.perf_counter()
    shapes = [(len(b), *run(b)) for b in timed]
    _sync()
    seconds = time.perf_counter() - start
    return _summary(
        sum(r * s for r, _, s in shapes),
        seconds,
        sum(s for _, _, s in shapes),
        sum(kv.batch_bytes(r, w, s) for r, w, s in shapes),
        device,
        rows=rows,
        batches=len(timed),
        warmup_seconds=warmup,
    )


def check_naive(sizes: Sizes, model, tokenizer, kv: KV, device: dict, end_ids: list[int]) -> dict:
    """One `generate` per question per candidate (what a user writes first), EOS off."""
    import torch

    from loop.config import GenerateSettings
    from loop.phases.generate import candidate_specs

    specs = candidate_specs(GenerateSettings(k=sizes.k), 0)
    _reset_peak()
    shapes = []
    start = time.perf_counter()
    for prompt in _prompts(tokenizer, examples(sizes.naive_questions)):
        ids = torch.tensor([prompt], device=model.device)
        for spec in specs:
            sample = spec.kind == "sample"
            if sample:
                torch.manual_seed(spec.seed)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=sample,
                    temperature=spec.temperature if sample else None,
                    top_p=spec.top_p if sample else None,
                    max_new_tokens=sizes.max_new_tokens,
                    min_new_tokens=sizes.max_new_tokens,
                    eos_token_id=end_ids,
                    pad_token_id=tokenizer.pad_token_id,
                )
            shapes.append((len(prompt), out.shape[1] - len(prompt)))
    _sync()
    seconds = time.perf_counter() - start
    return _summary(
        sum(s for _, s in shapes),
        seconds,
        sum(s for _, s in shapes),
        sum(kv.batch_bytes(1, w, s) for w, s in shapes),
        device,
        rows=1,
    )


def check_generate(
    sizes: Sizes,
    base: Path,
    work: Path,
    device: dict,
    anchors: bool,
    compiled: bool = True,
    out: dict | None = None,
    save=lambda: None,
) -> dict:
    """Every generation measurement into `out`, saved after each; one that fails is recorded as its
    error and the others still run (a device check must not lose its minutes to one variant)."""
    import torch

    from loop.models import load_generation_model
    from loop.phases.generate import _end_ids

    out = {} if out is None else out
    model, tokenizer = load_generation_model(base)
    kv = KV(model)
    end_ids = _end_ids(model, tokenizer)
    out["model"] = {
        "parameters": kv.params,
        "parameter_bytes": kv.param_bytes,
        "kv_bytes_per_token": kv.per_token,
    }
    out["naive"] = _guarded(check_naive, sizes, model, tokenizer, kv, device, end_ids)
    save()
    for rows in sizes.rows:
        runs = out[f"rows_{rows}"] = {}
        runs["pickloop"] = _guarded(check_pickloop, sizes, base, work, rows, kv, device)
        save()
        if anchors:
            for name, static in (("hf_generate_dynamic", False), ("hf_generate_static", True)):
                runs[name] = _guarded(check_hf, sizes, model, tokenizer, rows, kv, device, static, end_ids)
                save()
        if compiled and torch.cuda.is_available():  # generate.compile: static cache + CUDA graphs
            runs["pickloop_compiled"] = _guarded(
                check_pickloop, sizes, base, work, rows, kv, device, compile=True
            )
            save()
    return out


def _guarded(check, *args, **kwargs) -> dict:
    try:
        return check(*args, **kwargs)
    except Exception as exc:  # recorded in the JSON; the other measurements go on
        import traceback

        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


# ---------------------------------------------------------------------------------------------- main


def ratios(result: dict) -> dict[str, float]:
    """pickloop / each baseline, tokens per second (higher is better)."""
    out = {}
    gen = result.get("generate", {})
    for key, runs in gen.items():
        if not key.startswith("rows_"):
            continue
        for variant in ("pickloop", "pickloop_compiled"):
            if "tokens_per_s" not in runs.get(variant, {}):
                continue
            ours = runs[variant]["tokens_per_s"]
            if "tokens_per_s" in gen.get("naive", {}):
                out[f"generate_{key}_{variant}_vs_naive"] = ours / gen["naive"]["tokens_per_s"]
            for anchor in ("hf_generate_dynamic", "hf_generate_static"):
                if "tokens_per_s" in runs.get(anchor, {}):
                    out[f"generate_{key}_{variant}_vs_{anchor}"] = ours / runs[anchor]["tokens_per_s"]
    train = result.get("train", {})
    for variant in ("pickloop", "pickloop_batch_tokens"):
        if "tokens_per_s" in train.get(variant, {}) and "tokens_per_s" in train.get("trl_baseline", {}):
            out[f"train_{variant}_vs_trl_baseline"] = (
                train[variant]["tokens_per_s"] / train["trl_baseline"]["tokens_per_s"]
            )
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="Folder for gpu_check.json.")
    p.add_argument("--tiny", action="store_true", help="Tiny model and workload (CPU, seconds).")
    p.add_argument("--bandwidth", type=float, help="Memory bandwidth in TB/s (default: the device table).")
    p.add_argument("--peak-tflops", type=float, help="Peak dense bf16 TFLOPS (default: the device table).")
    p.add_argument("--rows", type=str, help="Rows per decoding batch, comma-separated (default 128,256).")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: 1 with --tiny, torch's default otherwise)."
    )
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-anchors", action="store_true", help="No plain HF generate anchors.")
    p.add_argument("--skip-compiled", action="store_true", help="No generate.compile variant (CUDA).")
    a = p.parse_args(argv)
    sizes = TINY if a.tiny else REAL
    threads = a.threads or (1 if a.tiny else None)
    if threads:  # on a small shared CPU, idle torch threads spin-wait for busy cores
        import torch

        torch.set_num_threads(threads)
    if a.rows:
        from dataclasses import replace

        sizes = replace(sizes, rows=tuple(int(r) for r in a.rows.split(",")))
    device = device_info(a.bandwidth, a.peak_tflops)
    result: dict = {"device": device, "sizes": sizes.__dict__, "tiny": a.tiny}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        texts = [m["content"] for ex in examples(175) for m in ex.messages]
        base = build_model(sizes, work / "model", texts)
        a.out.mkdir(parents=True, exist_ok=True)

        def save() -> None:  # after every measurement: a run cut short keeps what it measured
            result["ratios"] = ratios(result)
            result["wall_s"] = time.perf_counter() - started
            (a.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

        result["generate"] = {}
        check_generate(
            sizes, base, work, device, not a.skip_anchors, not a.skip_compiled, result["generate"], save
        )
        if not a.skip_train:
            params = result["generate"]["model"]["parameters"]
            result["train"] = _guarded(check_train, sizes, base, work, device, params)
    save()
    _print(result)
    return result


def _print(result: dict) -> None:
    dev = result["device"]
    print(f"device: {dev['name']}  bandwidth {dev['bandwidth_bytes_s']}  peak {dev['peak_flops']}")
    gen = result["generate"]
    rows = [("naive", gen.get("naive", {}))] + [
        (f"{key} {name}", run)
        for key, runs in gen.items()
        if key.startswith("rows_")
        for name, run in runs.items()
    ]
    print(f"{'generate':40} {'tok/s':>10} {'ms/step':>9} {'% bw bound':>10} {'peak GiB':>9}")
    for name, run in rows:
        if "tokens_per_s" not in run:
            print(f"{name:40} {run.get('error', 'not run')}")
            continue
        pct = run["pct_of_bandwidth_bound"]
        print(
            f"{name:40} {run['tokens_per_s']:10.1f} {run['ms_per_step']:9.2f} "
            f"{'-' if pct is None else f'{pct:.2f}':>10} {run['peak_memory_gib']:9.2f}"
        )
    train = result.get("train", {})
    if "error" in train:
        print(f"train: {train['error']}")
    for name, run in train.items():
        if not isinstance(run, dict):
            continue
        mfu = run["mfu_pct"]
        print(
            f"train {name:34} {run['tokens_per_s']:10.1f} tok/s, {run['s_per_step']:.3f} s/step, "
            f"MFU {'-' if mfu is None else f'{mfu:.2f}%'}, peak {run['peak_memory_gib']:.2f} GiB"
        )
    for name, value in result["ratios"].items():
        print(f"ratio {name}: {value:.2f}x")
    print(f"wall: {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
