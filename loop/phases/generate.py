"""Step 2 of a round (self-predict): the tuned model answers its own training questions.

For every assistant turn of every conversation, K candidates: one greedy (sampled-only candidates rarely
contain the right answer) and K-1 sampled at the configured temperatures/top_p/seeds. The context is
the conversation so far, with the dataset's current answers for earlier turns. Questions are batched
with left padding through the merged model under `torch.inference_mode`, decoded by a small KV-cache
loop that drops rows from the batch as they finish and samples top-p from a partial sort (much faster
than one `generate` per question per candidate on an unmerged adapter: benchmarks/bench_generate.py).

Identical candidates are merged (their settings are all kept, with a count), a candidate equal to the
current answer is marked `is_current`, and each one carries the mean log-probability of its tokens
under the model (temperature 1, no top_p; the current answer is scored the same way). The artifact is
one parquet file, one row per (example, assistant turn), written atomically; `load_candidates` reads
it back as dataclasses for the push step. Same seed and settings give the same candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loop.config import GenerateSettings, ModelSettings
from loop.context import RoundContext
from loop.data import Example
from loop.errors import ConfigError
from loop.fsutil import atomic_path
from loop.models import context_length, load_generation_model

if TYPE_CHECKING:
    from loop.models import RoundModel


@dataclass(frozen=True)
class Summary:
    turns: int
    candidates: int
    same_as_current: int  # turns where a candidate equals the dataset's current answer
    generate_runtime_s: float | None = None
    truncated_prompts: int = 0  # contexts cut (from the left) to fit the model's context / max_length
    truncated_answers: int = 0  # current answers scored on their first tokens only, for the same reason
    max_new_tokens: int | None = None  # the candidates' length limit this round used (auto resolved)
    chunks_written: int = 0
    chunks_reused: int = 0  # chunks of an interrupted run with the same model, settings and turns


def run(ctx: RoundContext) -> Summary:
    examples = ctx.examples()
    ctx.limit_cpu_threads()
    started = time.monotonic()
    stats: dict[str, int] = {}
    turns = generate_candidates(
        examples,
        ctx.paths.model,
        ctx.config.generate,
        ctx.paths.candidates,
        seed=ctx.seed,
        model_settings=ctx.config.model,
        progress=ctx.progress,
        max_length=ctx.config.train.sft.get("max_length", DEFAULT_MAX_LENGTH),
        stats=stats,
        chunks_dir=ctx.paths.candidate_chunks,
    )
    cut_prompts, cut_answers = stats.get("truncated_prompts", 0), stats.get("truncated_answers", 0)
    if cut_prompts or cut_answers:
        ctx.report(
            f"round {ctx.round}: {cut_prompts} prompt(s) cut from the left and {cut_answers} current "
            "answer(s) scored on their first tokens only, to fit the model's context and train.sft.max_length"
        )
    return Summary(
        turns=len(turns),
        candidates=sum(len(t.candidates) for t in turns),
        same_as_current=sum(any(c.is_current for c in t.candidates) for t in turns),
        generate_runtime_s=time.monotonic() - started,
        truncated_prompts=stats.get("truncated_prompts", 0),
        truncated_answers=stats.get("truncated_answers", 0),
        chunks_written=stats.get("chunks_written", 0),
        chunks_reused=stats.get("chunks_reused", 0),
        max_new_tokens=stats.get("max_new_tokens"),
    )


Generated = tuple[list[int], float | None]
"""A completion's token ids and mean log-probability (None: not scored yet)."""

CHUNK_TURNS = 256
"""Turns per candidates chunk: a crash loses at most this much work."""

DEFAULT_MAX_LENGTH = 1024
"""`SFTConfig.max_length` as the train phase sets it: sequences longer than this were never trained on."""

SCORE_BUDGET = 2**26
"""Logit elements (batch x length x vocab) per scoring forward pass; bounds memory on big vocabularies."""


@dataclass(frozen=True)
class SampleSpec:
    """How one candidate was generated."""

    kind: str  # "greedy" | "sample"
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Candidate:
    text: str
    count: int
    mean_logprob: float | None
    is_current: bool
    settings: list[SampleSpec] = field(default_factory=list)


@dataclass(frozen=True)
class TurnCandidates:
    """One assistant turn to label: its context, the dataset's answer and the model's candidates."""

    example_id: str
    turn: int  # 0-based ordinal among the conversation's assistant turns
    message_index: int
    context: list[dict[str, str]]
    current_answer: str
    current_mean_logprob: float | None
    candidates: list[Candidate]
    n_empty: int = 0  # candidates dropped because the model stopped at once


def candidate_specs(settings: GenerateSettings, seed: int) -> list[SampleSpec]:
    """Greedy first, then K-1 sampled ones cycling over temperatures; seeds from settings or `seed+i`."""
    seeds = list(settings.seeds) if settings.seeds else [seed + i for i in range(1, settings.k)]
    temps = settings.temperatures
    return [SampleSpec("greedy")] + [
        SampleSpec("sample", temps[(i - 1) % len(temps)], settings.top_p, seeds[(i - 1) % len(seeds)])
        for i in range(1, settings.k)
    ]


def candidate_seed(spec: SampleSpec, example_id: str, turn: int) -> int:
    """The seed of one sampled candidate's draws: fixed by its recorded settings, example and turn, so a
    candidate is reproducible alone (`regenerate`), whatever batch it was decoded in."""
    key = [spec.seed, spec.temperature, spec.top_p, example_id, turn]
    digest = hashlib.sha256(json.dumps(key).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


AUTO_HEADROOM = 1.25
"""`max_new_tokens: auto` leaves this much room above the answers' 99th-percentile length."""
AUTO_MIN_NEW_TOKENS = 16


def auto_max_new_tokens(answer_lengths: Sequence[int]) -> int:
    """1.25 x the 99th percentile of the current answers' lengths, rounded up to a multiple of 8.

    A percentile, not the maximum: one pasted 1 MB answer must not make every candidate that long."""
    if not answer_lengths:
        return AUTO_MIN_NEW_TOKENS
    ordered = sorted(answer_lengths)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return max(AUTO_MIN_NEW_TOKENS, math.ceil(AUTO_HEADROOM * p99 / 8) * 8)


def resolve_max_new_tokens(settings: GenerateSettings, answers: Sequence[list[int]]) -> GenerateSettings:
    """The settings with `max_new_tokens: auto` replaced by its value for these answers (token ids,
    end of turn included: `_answer_ids`)."""
    if settings.max_new_tokens != "auto":
        return settings
    return settings.model_copy(update={"max_new_tokens": auto_max_new_tokens([len(a) for a in answers])})


def generation_limits(model, settings: GenerateSettings, max_length: int | None) -> tuple[int, int]:
    """(longest prompt, most new tokens): prompt + candidate fit the model's context and `max_length`."""
    limits = [n for n in (context_length(model), max_length) if n]
    limit = min(limits) if limits else 2**31
    prompt_budget = max(limit - settings.max_new_tokens, limit // 2)
    return prompt_budget, min(settings.max_new_tokens, limit - prompt_budget)


def regenerate(
    model,
    tokenizer,
    context: list[dict[str, str]],
    spec: SampleSpec,
    example_id: str,
    turn: int,
    max_new_tokens: int,
) -> str:
    """One candidate alone, from what `candidates.parquet` records (its spec, example id and turn)."""
    import torch

    text = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    end_ids = _end_ids(model, tokenizer)
    seed = candidate_seed(spec, example_id, turn) if spec.kind == "sample" else 0
    with torch.inference_mode():
        ((ids, _),) = _decode(
            model, [prompt], [spec], [seed], max_new_tokens, end_ids, tokenizer.pad_token_id
        )
    return tokenizer.decode([t for t in ids if t not in end_ids], skip_special_tokens=True).strip()


def _end_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return sorted({*ids, tokenizer.eos_token_id} - {None})


def _pad_left(rows: Sequence[list[int]], pad_id: int, device):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def score(model, prompts: Sequence[list[int]], completions: Sequence[list[int]]) -> list[float | None]:
    """Mean log-probability of each completion's tokens given its prompt (temperature 1, no top_p).

    Rows are left-padded so every completion ends the row, and only the last positions' logits are
    computed (`logits_to_keep`): the prompt's logits are never materialised over the vocabulary.
    """
    import torch

    out: list[float | None] = [None] * len(prompts)
    vocab = model.config.get_text_config().vocab_size
    order = sorted((i for i in range(len(prompts)) if completions[i]), key=lambda i: -len(completions[i]))
    start = 0
    while start < len(order):
        keep = len(completions[order[start]]) + 1
        chunk = order[start : start + max(1, min(64, SCORE_BUDGET // (keep * vocab)))]
        start += len(chunk)
        ids, mask = _pad_left([list(prompts[i]) + list(completions[i]) for i in chunk], 0, model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        sizes = [len(completions[i]) for i in chunk]
        picked = torch.cat([logits[row, keep - c - 1 : keep - 1] for row, c in enumerate(sizes)])
        targets = torch.cat([ids[row, ids.shape[1] - c :] for row, c in enumerate(sizes)])
        logp = torch.log_softmax(picked.float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        for i, part in zip(chunk, logp.split(sizes), strict=True):
            out[i] = part.mean().item()
    return out


def _prompts(examples: Sequence[Example], tokenizer) -> list[tuple[Example, int, int, list[int]]]:
    turns = []
    for ex in examples:
        for ordinal, idx in enumerate(ex.assistant_turns()):
            text = tokenizer.apply_chat_template(
                ex.messages[:idx], tokenize=False, add_generation_prompt=True
            )
            turns.append((ex, ordinal, idx, tokenizer(text, add_special_tokens=False)["input_ids"]))
    return turns


def _generate_transformers(
    model, tokenizer, prompts, specs, settings, progress: bool, expected_lengths: Sequence[int], keys
) -> list[list[Generated]]:
    """`[spec][prompt]` completions (end-of-turn token kept when the model emitted one) and scores.

    One decoding batch holds up to `batch_size` prompts with all their K candidates (greedy and sampled
    rows side by side) within `batch_tokens`, grouped by prompt length (less padding) and current
    answer length (`decode_batches`)."""
    import torch
    from tqdm.auto import tqdm

    end_ids = _end_ids(model, tokenizer)
    plan = DecodePlan.for_device(model.device, compile=settings.compile)
    batches = decode_batches(
        [len(p) for p in prompts],
        expected_lengths,
        len(specs),
        settings.max_new_tokens,
        settings.batch_size,
        settings.batch_tokens,
    )
    result: list[list[Generated]] = [[([], None) for _ in prompts] for _ in specs]
    with torch.inference_mode(), tqdm(total=len(prompts), desc="candidates", disable=not progress) as bar:
        for batch in batches:
            rows = [(i, s) for i in batch for s in range(len(specs))]
            seeds = [candidate_seed(specs[s], *keys[i]) if specs[s].kind == "sample" else 0 for i, s in rows]
            outs = _decode(
                model,
                [prompts[i] for i, _ in rows],
                [specs[s] for _, s in rows],
                seeds,
                settings.max_new_tokens,
                end_ids,
                tokenizer.pad_token_id,
                plan,
            )
            for (i, s), generated in zip(rows, outs, strict=True):
                result[s][i] = generated
            bar.update(len(batch))
    return result


@dataclass(frozen=True)
class DecodePlan:
    """How `_decode` runs on a device. Every combination gives the same greedy tokens and the same
    sampling distribution; they differ in where the time goes.

    On CPU a step costs what its rows compute, so finished rows leave the batch at once and the host
    looks at every step (a sync costs nothing there). On a GPU a step costs launching its kernels and
    reading the weights, about the same for 100 rows as for 200: the host looks every `check_every`
    steps only (no `.tolist()` per step: the GPU runs ahead), finished rows are masked and the cache is
    compacted only when `compact_at` of the batch has finished, and top-p is a sort on the device.
    `static` (fixed-shape KV cache) with `compile` (the one-token step captured as CUDA graphs by
    `torch.compile(mode="reduce-overhead")`) removes the per-kernel launch cost; a static cache is
    never compacted."""

    check_every: int = 1
    compact_at: float = 0.0  # fraction of the batch finished that drops them from the cache (0: any)
    sort_sampling: bool = False  # top-p by a full sort on the device (no host sync), not top-k + bisection
    static: bool = False
    compile: bool = False

    @classmethod
    def for_device(cls, device, compile: bool = False) -> DecodePlan:
        if getattr(device, "type", str(device)) != "cuda":
            return cls()
        return cls(check_every=8, compact_at=0.5, sort_sampling=True, static=compile, compile=compile)


STATIC_BUCKET = 256
"""A static cache's length is rounded up to a multiple of this, so batches share compiled graphs."""


def decode_batches(
    prompt_lengths: Sequence[int],
    expected_lengths: Sequence[int],
    k: int,
    max_new_tokens: int,
    batch_size: int,
    batch_tokens: int | None,
) -> list[list[int]]:
    """Prompt indices per decoding batch, longest prompts first: at most `batch_size` prompts, and
    `k` rows per prompt x (longest prompt + `max_new_tokens`) within `batch_tokens` (a prompt over the
    budget goes alone). Padding is to the batch's longest prompt, so one 4k-token context costs its own
    batch, not 128 rows of 4k."""
    order = sorted(range(len(prompt_lengths)), key=lambda i: (-prompt_lengths[i], -expected_lengths[i]))
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            width = prompt_lengths[batch[0]] + max_new_tokens  # the first is the longest
            fits = batch_tokens is None or (len(batch) + 1) * k * width <= batch_tokens
            if len(batch) < batch_size and fits:
                batch.append(i)
                continue
        batches.append([i])
    return batches


def _decode(
    model,
    prompts,
    specs: Sequence[SampleSpec],
    seeds: Sequence[int],
    max_new_tokens: int,
    end_ids,
    pad_id: int,
    plan: DecodePlan | None = None,
):
    """Decode one left-padded batch with a KV cache; row r is greedy or sampled per `specs[r]`.
    Returns each row's tokens and their mean log-probability under the model (raw logits, which
    makes it the same number as `score` gives for the same tokens, without a second forward pass).

    A small loop instead of `generate`: finished rows leave the batch (and the cache) as `plan` says
    (`DecodePlan`: at once on CPU), so a batch costs what its rows need, not `rows x longest row`;
    rows with different sampling settings share one batch; and no model `generation_config`
    (repetition penalty, top_k...) is merged in behind the recorded settings. Row r's random numbers
    come from `seeds[r]` and the step alone (`_uniform`), so a row samples the same tokens in any batch.
    Produced tokens stay on the device until the end."""
    import torch
    from transformers import DynamicCache, StaticCache

    device = model.device
    plan = plan or DecodePlan.for_device(device)
    n = len(prompts)
    ids, prompt_mask = _pad_left(prompts, pad_id, device)
    width = ids.shape[1]
    length = width + max_new_tokens
    if plan.static:
        length = math.ceil(length / STATIC_BUCKET) * STATIC_BUCKET
        cache = StaticCache(config=model.config, max_cache_len=length)
    else:
        cache = DynamicCache(config=model.config)
    # the attention mask of every step, filled as tokens arrive (a static cache sees all of it)
    mask = torch.zeros(n, length, dtype=prompt_mask.dtype, device=device)
    mask[:, :width] = prompt_mask
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    cache_positions = torch.arange(length, device=device)  # sliced each step: no host-to-device copy
    extra = {"cache_position": cache_positions[:width]} if plan.static else {}
    logits = model(
        input_ids=ids,
        attention_mask=mask if plan.static else prompt_mask,
        position_ids=positions,
        past_key_values=cache,
        logits_to_keep=1,
        **extra,
    ).logits[:, -1]
    step_call = model
    if plan.compile:
        from transformers import CompileConfig

        step_call = model.get_compiled_call(CompileConfig(fullgraph=False, mode="reduce-overhead"))
    greedy = [s.kind == "greedy" for s in specs]
    temperature = torch.tensor([s.temperature or 1.0 for s in specs], device=device)
    top_p = torch.tensor([s.top_p or 1.0 for s in specs], device=device)
    row_seed = torch.tensor(list(seeds), dtype=torch.int64, device=device)
    out = torch.full((n, max_new_tokens), -1, dtype=torch.int64, device=device)
    logprob = torch.zeros(n, dtype=torch.float64, device=device)
    live = torch.arange(n, device=device)  # the global row of each batch row
    alive = torch.ones(n, dtype=torch.bool, device=device)  # not finished (masked rows are kept in the batch)
    position = positions[:, -1]
    ends = torch.tensor(list(end_ids), device=device)
    sampled = torch.tensor([i for i, g in enumerate(greedy) if not g], dtype=torch.int64, device=device)
    draw = _draw_sorted if plan.sort_sampling else _draw
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)
        if len(sampled):
            u = _uniform(row_seed[sampled], step)
            tokens[sampled] = draw(logits[sampled], temperature[sampled], top_p[sampled], u)
        lp = torch.log_softmax(logits.float(), -1).gather(-1, tokens[:, None]).squeeze(-1).double()
        out[live, step] = torch.where(alive, tokens, -1)
        logprob[live] += torch.where(alive, lp, 0.0)
        alive = alive & ~torch.isin(tokens, ends)
        if step == max_new_tokens - 1:
            break
        if (step + 1) % plan.check_every == 0:
            left = int(alive.sum())
            if not left:
                break
            if not plan.static and left < len(live) and (len(live) - left) >= plan.compact_at * len(live):
                keep = alive.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                live, tokens, mask, position, alive = (
                    live[keep],
                    tokens[keep],
                    mask[keep],
                    position[keep],
                    alive[keep],
                )
                temperature, top_p, row_seed = temperature[keep], top_p[keep], row_seed[keep]
                greedy = [greedy[i] for i in keep.tolist()]
                sampled = torch.tensor(
                    [i for i, g in enumerate(greedy) if not g], dtype=torch.int64, device=device
                )
        mask[:, width + step] = 1
        position = position + 1
        if plan.static:
            if plan.compile:
                torch.compiler.cudagraph_mark_step_begin()
            logits = (
                step_call(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    position_ids=position[:, None],
                    past_key_values=cache,
                    cache_position=cache_positions[width + step : width + step + 1],
                )
                .logits[:, -1]
                .clone()
            )
        else:
            logits = step_call(
                input_ids=tokens[:, None],
                attention_mask=mask[:, : width + step + 1],
                position_ids=position[:, None],
                past_key_values=cache,
            ).logits[:, -1]
    rows = out.tolist()
    totals = logprob.tolist()
    result = []
    for row, total in zip(rows, totals, strict=True):
        tokens = [t for t in row if t >= 0]
        result.append((tokens, total / len(tokens)))
    return result


def _draw_sorted(logits, temperature, top_p, u):
    """`_draw` by a full sort of the vocabulary: the same distribution with no host synchronisation
    (no data-dependent branch), which is what a GPU wants; on CPU the sort is the slow part."""
    import torch

    rows = logits.shape[0]
    temperature = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device).expand(rows)
    top_p = torch.as_tensor(top_p, dtype=torch.float32, device=logits.device).expand(rows)
    probs = (logits.float() / temperature[:, None]).softmax(-1)
    top, idx = probs.sort(dim=-1, descending=True)
    keep = (top.cumsum(-1) - top) < top_p[:, None]
    keep[:, 0] = True
    return idx.gather(-1, _inverse_cdf(top * keep, u)).squeeze(-1)


def _draw(logits, temperature, top_p, u, k: int = 256):
    """One token per row from temperature + top-p sampling (the distribution of transformers' warpers,
    up to float ties); `temperature`/`top_p` are numbers or one value per row, `u` one uniform number
    in [0, 1) per row.

    Sorting the vocabulary and `torch.multinomial` were most of CPU sampling time, so the nucleus is
    looked for among the `k` likeliest tokens (`topk`), rows whose nucleus is wider find its threshold
    by bisection, and the token is drawn by inverting the cumulative distribution."""
    import torch

    rows = logits.shape[0]
    temperature = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device).expand(rows)
    top_p = torch.as_tensor(top_p, dtype=torch.float32, device=logits.device).expand(rows)
    probs = (logits.float() / temperature[:, None]).softmax(-1)
    top, idx = probs.topk(min(k, probs.shape[-1]), dim=-1)
    keep = (top.cumsum(-1) - top) < top_p[:, None]  # the likelier tokens' mass is still below top_p
    keep[:, 0] = True
    tokens = idx.gather(-1, _inverse_cdf(top * keep, u)).squeeze(-1)
    wide = (top.sum(-1) < top_p).nonzero().squeeze(-1)
    if len(wide):
        p, target = probs[wide], top_p[wide]
        low, high = torch.zeros_like(target), p.max(-1).values
        for _ in range(30):  # largest threshold whose tokens still hold top_p of the mass
            mid = (low + high) / 2
            enough = (p * (p >= mid[:, None])).sum(-1) >= target
            low, high = torch.where(enough, mid, low), torch.where(enough, high, mid)
        tokens[wide] = _inverse_cdf(p * (p >= low[:, None]), u[wide]).squeeze(-1)
    return tokens


def _inverse_cdf(weights, u):
    """One index per row, drawn with probability proportional to `weights` (zeros never drawn)."""
    import torch

    cdf = weights.cumsum(-1)
    target = u[:, None].to(cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).clamp(max=weights.shape[-1] - 1)


def _signed(n: int) -> int:
    n &= 2**64 - 1
    return n - 2**64 if n >= 2**63 else n


_GOLDEN, _MIX1, _MIX2 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _uniform(seeds, step: int):
    """One number in [0, 1) per row from (row seed, step): splitmix64 on int64 tensors (wrapping
    multiplication, logical shifts), the same on every device and in any batch. A dozen elementwise
    ops per step instead of one `torch.Generator` per row."""

    def srl(x, n: int):
        return (x >> n) & ((1 << (64 - n)) - 1)

    x = seeds + _signed((step + 1) * 0x9E3779B97F4A7C15)
    x = (x ^ srl(x, 30)) * _MIX1
    x = (x ^ srl(x, 27)) * _MIX2
    x = x ^ srl(x, 31)
    return srl(x, 11).double() * 2.0**-53


def _generate_vllm(model_dir: str, prompts, specs, settings, keys) -> list[list[Generated]]:
    """Same as `_generate_transformers`, on vLLM (GPU machines with `vllm` installed)."""
    from vllm import LLM, SamplingParams, TokensPrompt

    llm = LLM(model=model_dir, seed=0, gpu_memory_utilization=0.5)
    result = []
    for spec in specs:
        params = [
            SamplingParams(
                max_tokens=settings.max_new_tokens,
                temperature=spec.temperature if spec.kind == "sample" else 0.0,
                top_p=spec.top_p if spec.kind == "sample" else 1.0,
                seed=candidate_seed(spec, *key) if spec.kind == "sample" else None,
            )
            for key in keys
        ]
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=True)
        result.append([(list(o.outputs[0].token_ids), None) for o in outs])  # scored afterwards
    del llm
    return result


def generate_candidates(
    examples: Sequence[Example],
    source: str | Path | RoundModel,
    settings: GenerateSettings,
    out_path: str | Path,
    *,
    seed: int = 0,
    model_settings: ModelSettings | None = None,
    progress: bool = True,
    max_length: int | None = None,
    stats: dict[str, int] | None = None,
    chunks_dir: str | Path | None = None,
    chunk_turns: int = CHUNK_TURNS,
) -> list[TurnCandidates]:
    """Generate, merge, score and write the candidates of every assistant turn to `out_path` (parquet).

    `source` is a round directory (or its `RoundModel`), or a plain model folder / Hub id. Prompts and
    scored answers are capped by the model's context and `max_length` (counts into `stats`).

    With `chunks_dir`, every `chunk_turns` turns are written there as `chunk-NNNNN.parquet` (atomically)
    as soon as they are done, each keyed by a hash of the model, seed, settings and its turns' text; a
    re-run reuses the chunks whose key matches and regenerates the rest, then writes `out_path`."""
    stats = {} if stats is None else stats
    source = getattr(source, "round_dir", source)
    specs = candidate_specs(settings, seed)
    if settings.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "vllm is not installed (it needs a GPU machine: pip install 'pickloop[vllm]'); "
                "use backend: transformers",
                key="generate.backend",
            )
        from transformers import AutoTokenizer

        merged = Path(source) / "merged" if (Path(source) / "merged").is_dir() else Path(source)
        from transformers import AutoConfig

        tokenizer = AutoTokenizer.from_pretrained(str(merged))
        config = AutoConfig.from_pretrained(str(merged))
        turns = _prompts(examples, tokenizer)
        answers = _answer_ids(turns, tokenizer)
        settings = resolve_max_new_tokens(settings, answers)
        budget, max_new = generation_limits(type("M", (), {"config": config}), settings, max_length)
        turns = _capped(turns, budget, stats)
        prompts = [t[3] for t in turns]
        keys = [(ex.id, ordinal) for ex, ordinal, _, _ in turns]
        capped = settings.model_copy(update={"max_new_tokens": max_new})
        generated = _generate_vllm(str(merged), prompts, specs, capped, keys)  # not chunked
        model, tokenizer = load_generation_model(source, model_settings)  # for scoring, after vLLM is gone
        currents = _currents(turns, answers, budget + max_new, stats)
        rows = _assemble(model, tokenizer, turns, specs, generated, currents)
    else:
        model, tokenizer = load_generation_model(source, model_settings)
        turns = _prompts(examples, tokenizer)
        answers = _answer_ids(turns, tokenizer)
        settings = resolve_max_new_tokens(settings, answers)
        budget, max_new = generation_limits(model, settings, max_length)
        turns = _capped(turns, budget, stats)
        currents = _currents(turns, answers, budget + max_new, stats)
        capped = settings.model_copy(update={"max_new_tokens": max_new})
        base_key = [_fingerprint(source), seed, capped.model_dump(mode="json"), [asdict(s) for s in specs]]
        step = chunk_turns if chunks_dir is not None else max(1, len(turns))
        stats["chunks_written"] = stats["chunks_reused"] = 0
        rows = []
        for n, start in enumerate(range(0, len(turns), step)):
            part, part_currents = turns[start : start + step], currents[start : start + step]
            key = _chunk_key(base_key, part)
            path = Path(chunks_dir) / f"chunk-{n:05d}.parquet" if chunks_dir is not None else None
            if path is not None and _chunk_matches(path, key):
                rows += load_candidates(path)
                stats["chunks_reused"] += 1
                continue
            prompts = [t[3] for t in part]
            keys = [(ex.id, ordinal) for ex, ordinal, _, _ in part]
            lengths = [min(len(c), max_new) for c in part_currents]
            generated = _generate_transformers(
                model, tokenizer, prompts, specs, capped, progress, lengths, keys
            )
            done = _assemble(model, tokenizer, part, specs, generated, part_currents)
            if path is not None:
                write_candidates(done, path, {"chunk_key": key})
                stats["chunks_written"] += 1
            rows += done
    stats["max_new_tokens"] = max_new
    meta = {
        "source": str(source),
        "seed": seed,
        "settings": settings.model_dump(mode="json"),
        "specs": [asdict(s) for s in specs],
    }
    write_candidates(rows, out_path, meta)
    return rows


def _fingerprint(source: str | Path) -> str:
    """What identifies the model: a round's train_config + metrics (a retrain rewrites them), the
    files' sizes and times of a plain folder, or the Hub id."""
    path = Path(source)
    if (path / "train_config.json").is_file():
        parts = [
            (path / n).read_bytes() for n in ("train_config.json", "metrics.json") if (path / n).is_file()
        ]
        return hashlib.sha256(b"\0".join(parts)).hexdigest()
    if path.is_dir():
        files = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()
        )
        return hashlib.sha256(json.dumps(files).encode()).hexdigest()
    return str(source)


def _chunk_key(base_key: list, turns) -> str:
    content = [base_key, [(ex.id, ordinal, ex.messages[: idx + 1]) for ex, ordinal, idx, _ in turns]]
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _chunk_matches(path: Path, key: str) -> bool:
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    try:
        meta = json.loads(pq.read_schema(path).metadata[b"pickloop"])
    except Exception:  # unreadable or foreign: regenerate it
        return False
    return meta.get("chunk_key") == key


def _capped(turns, budget: int, stats: dict[str, int]):
    """Prompts longer than `budget` tokens keep their end (the latest turns and the generation prompt)."""
    stats["truncated_prompts"] = sum(len(t[3]) > budget for t in turns)
    return [(ex, ordinal, idx, ids[-budget:]) for ex, ordinal, idx, ids in turns]


def _answer_ids(turns, tokenizer) -> list[list[int]]:
    """Each turn's current answer as token ids + end of turn, tokenized once for sizing and scoring."""
    return [
        tokenizer(ex.messages[idx]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for ex, _, idx, _ in turns
    ]


def _currents(turns, answers: Sequence[list[int]], limit: int, stats: dict[str, int]) -> list[list[int]]:
    """Each turn's current answer as scored (`_answer_ids`), cut to fit after its prompt."""
    out, cut = [], 0
    for (_, _, _, prompt), ids in zip(turns, answers, strict=True):
        room = max(1, limit - len(prompt))
        cut += len(ids) > room
        out.append(ids[:room])
    stats["truncated_answers"] = cut
    return out


def _assemble(
    model, tokenizer, turns, specs, generated: list[list[Generated]], currents: list[list[int]]
) -> list[TurnCandidates]:
    """Decode, merge identical candidates, mark the current answer; score what is not scored yet."""
    import torch

    end_ids = _end_ids(model, tokenizer)

    def text_of(ids: list[int]) -> str:
        return tokenizer.decode([t for t in ids if t not in end_ids], skip_special_tokens=True).strip()

    scored: dict[tuple[int, tuple[int, ...]], float | None] = {}  # (turn, completion ids) -> mean logprob
    for n in range(len(turns)):
        scored[(n, tuple(currents[n]))] = None
        for per in generated:
            ids, lp = per[n]
            if scored.get((n, tuple(ids))) is None:
                scored[(n, tuple(ids))] = lp
    missing = [key for key, lp in scored.items() if lp is None]
    with torch.inference_mode():
        values = score(model, [turns[n][3] for n, _ in missing], [list(ids) for _, ids in missing])
    scored.update(zip(missing, values, strict=True))
    rows = []
    for n, (ex, ordinal, idx, _) in enumerate(turns):
        answer = ex.messages[idx]["content"]
        merged: dict[str, Candidate] = {}
        for spec, per in zip(specs, generated, strict=True):
            ids = per[n][0]
            text = text_of(ids)
            if text in merged:
                old = merged[text]
                merged[text] = dataclasses.replace(old, count=old.count + 1, settings=[*old.settings, spec])
            elif text:
                merged[text] = Candidate(text, 1, scored[(n, tuple(ids))], text == answer.strip(), [spec])
        rows.append(
            TurnCandidates(
                example_id=ex.id,
                turn=ordinal,
                message_index=idx,
                context=ex.messages[:idx],
                current_answer=answer,
                current_mean_logprob=scored[(n, tuple(currents[n]))],
                candidates=list(merged.values()),
                n_empty=sum(1 for per in generated if not text_of(per[n][0])),
            )
        )
    return rows


def write_candidates(
    rows: Sequence[TurnCandidates], path: str | Path, meta: dict[str, Any] | None = None
) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=_schema())
    table = table.replace_schema_metadata({"pickloop": json.dumps(meta or {}, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def load_candidates(path: str | Path) -> list[TurnCandidates]:
    """Read a candidates parquet back as `TurnCandidates` (what the push step consumes)."""
    import pyarrow.parquet as pq

    out = []
    for r in pq.read_table(path).to_pylist():
        cands = [
            Candidate(**{**c, "settings": [SampleSpec(**s) for s in c["settings"]]})
            for c in r.pop("candidates")
        ]
        out.append(TurnCandidates(**r, candidates=cands))
    return out


def _schema():
    import pyarrow as pa

    spec = pa.struct(
        [("kind", pa.string()), ("temperature", pa.float64()), ("top_p", pa.float64()), ("seed", pa.int64())]
    )
    cand = pa.struct(
        [
            ("text", pa.string()),
            ("count", pa.int32()),
            ("mean_logprob", pa.float64()),
            ("is_current", pa.bool_()),
            ("settings", pa.list_(spec)),
        ]
    )
    msg = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("example_id", pa.string()),
            ("turn", pa.int32()),
            ("message_index", pa.int32()),
            ("context", pa.list_(msg)),
            ("current_answer", pa.string()),
            ("current_mean_logprob", pa.float64()),
            ("candidates", pa.list_(cand)),
            ("n_empty", pa.int32()),
        ]
    )


def complete(
    model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int, batch_size: int, progress: bool = False
) -> list[str]:
    """Greedy completions of token-id prompts, decoded, through this module's batched KV-cache loop
    (the decoding the round's candidates use; `loop.seed` generates documents' QA pairs with it)."""
    if not prompts:
        return []
    settings = GenerateSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)  # k: only specs count
    keys = [("complete", n) for n in range(len(prompts))]
    (generated,) = _generate_transformers(
        model, tokenizer, list(prompts), [SampleSpec("greedy")], settings, progress, [0] * len(prompts), keys
    )
    end_ids = _end_ids(model, tokenizer)
    return [
        tokenizer.decode([t for t in ids if t not in end_ids], skip_special_tokens=True).strip()
        for ids, _ in generated
    ]
