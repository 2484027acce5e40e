from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_fixtures import tiny_model, train_examples, trained_round  # noqa: F401

from loop.config import GenerateSettings
from loop.errors import ConfigError
from loop.phases.generate import SampleSpec, candidate_specs, generate_candidates, load_candidates

SETTINGS = GenerateSettings(k=4, temperatures=[0.7, 1.5], top_p=0.95, max_new_tokens=40, batch_size=4)


@pytest.fixture(scope="module")
def candidates(trained_round, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    out = tmp_path_factory.mktemp("gen") / "candidates.parquet"
    rows = generate_candidates(
        train_examples(), trained_round.model.round_dir, SETTINGS, out, seed=7, progress=False
    )
    return out, rows


def test_candidate_specs() -> None:
    specs = candidate_specs(SETTINGS, seed=10)
    assert specs == [
        SampleSpec("greedy"),
        SampleSpec("sample", 0.7, 0.95, 11),
        SampleSpec("sample", 1.5, 0.95, 12),
        SampleSpec("sample", 0.7, 0.95, 13),
    ]
    explicit = candidate_specs(GenerateSettings(k=3, seeds=[5]), seed=10)
    assert [s.seed for s in explicit] == [None, 5, 5]


@pytest.mark.train  # uses the trained round
def test_k_candidates_per_assistant_turn_with_dedup(candidates) -> None:
    _, rows = candidates
    examples = train_examples()
    expected = [(ex.id, n, i) for ex in examples for n, i in enumerate(ex.assistant_turns())]
    assert [(r.example_id, r.turn, r.message_index) for r in rows] == expected
    by_id = {ex.id: ex for ex in examples}
    for r in rows:
        ex = by_id[r.example_id]
        assert r.context == ex.messages[: r.message_index]  # earlier turns use the dataset's answers
        assert r.current_answer == ex.messages[r.message_index]["content"]
        assert sum(c.count for c in r.candidates) + r.n_empty == SETTINGS.k
        assert len({c.text for c in r.candidates}) == len(r.candidates)  # identical ones merged
        for c in r.candidates:
            assert c.count == len(c.settings)
            assert c.is_current == (c.text == r.current_answer)
            assert c.mean_logprob is not None and c.mean_logprob <= 0
        assert r.candidates[0].settings[0] == SampleSpec("greedy")
    merged = [c for r in rows for c in r.candidates if c.count > 1]
    assert merged, "a memorised model repeats itself: some candidates must have been merged"
    current = sum(any(c.is_current for c in r.candidates) for r in rows)
    assert current >= len(rows) * 0.6


@pytest.mark.train  # uses the trained round
def test_greedy_candidate_scored_like_current_answer(candidates) -> None:
    _, rows = candidates
    pairs = [
        (r.current_mean_logprob, r.candidates[0].mean_logprob) for r in rows if r.candidates[0].is_current
    ]
    assert pairs
    for current, greedy in pairs:
        assert greedy == pytest.approx(current, abs=1e-4)


@pytest.mark.train  # uses the trained round
def test_artifact_round_trip(candidates) -> None:
    import pyarrow.parquet as pq

    path, rows = candidates
    assert load_candidates(path) == rows
    meta = json.loads(pq.read_schema(path).metadata[b"pickloop"])
    assert meta["seed"] == 7 and meta["settings"]["k"] == 4 and len(meta["specs"]) == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["candidates.parquet"]  # no temp files left


@pytest.mark.train  # uses the trained round
def test_same_seed_same_candidates(trained_round, candidates, tmp_path: Path) -> None:  # noqa: F811
    _, rows = candidates
    again = generate_candidates(
        train_examples(),
        trained_round.model.round_dir,
        SETTINGS,
        tmp_path / "again.parquet",
        seed=7,
        progress=False,
    )
    assert again == rows
    other = generate_candidates(
        train_examples(),
        trained_round.model.round_dir,
        SETTINGS,
        tmp_path / "other.parquet",
        seed=8,
        progress=False,
    )
    assert [s.seed for s in candidate_specs(SETTINGS, 8)][1:] == [9, 10, 11]
    seeds = {s.seed for r in other for c in r.candidates for s in c.settings}
    assert seeds == {None, 9, 10, 11}


@pytest.mark.train  # uses the trained round
def test_vllm_backend_needs_vllm(trained_round, tmp_path: Path) -> None:  # noqa: F811
    settings = SETTINGS.model_copy(update={"backend": "vllm"})
    with pytest.raises(ConfigError, match="vllm is not installed") as info:
        generate_candidates(train_examples(), trained_round.model.round_dir, settings, tmp_path / "c.parquet")
    assert info.value.key == "generate.backend"
    assert not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize(("temperature", "top_p", "k"), [(0.7, 0.9, 256), (1.5, 0.95, 8)])
def test_draw_samples_the_transformers_nucleus(temperature: float, top_p: float, k: int) -> None:
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from loop.phases.generate import _draw

    torch.manual_seed(0)
    logits = (torch.randn(1, 200) * 2).repeat(4000, 1)
    nucleus = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits[:1].clone()))
    expected = nucleus.softmax(-1)[0]
    u = torch.rand(len(logits), generator=torch.Generator().manual_seed(1))
    tokens = _draw(logits, temperature, top_p, u, k)
    seen = torch.bincount(tokens, minlength=200) / len(tokens)
    assert set(tokens.tolist()) <= set(expected.nonzero().flatten().tolist())
    assert (seen - expected).abs().max() < 0.03
    again = _draw(logits, temperature, top_p, u.clone(), k)
    assert torch.equal(tokens, again)


@pytest.mark.train  # uses the trained round
def test_decode_matches_transformers_generate(trained_round) -> None:  # noqa: F811
    import torch

    from loop.models import load_generation_model
    from loop.phases.generate import _decode, _end_ids, score

    model, tok = load_generation_model(trained_round.model.round_dir)
    end_ids = _end_ids(model, tok)
    prompts = [
        tok(tok.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True))["input_ids"]
        for ex in train_examples()
    ]
    ours = _decode(
        model,
        prompts,
        [SampleSpec("greedy")] * len(prompts),
        [0] * len(prompts),
        24,
        end_ids,
        tok.pad_token_id,
    )
    batch = tok.pad({"input_ids": prompts}, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=24, eos_token_id=end_ids)
    for row, (tokens, _) in enumerate(ours):
        theirs = out[row, batch["input_ids"].shape[1] :].tolist()
        assert tokens == theirs[: len(tokens)]
        assert len(tokens) == 24 or tokens[-1] in end_ids
    with torch.inference_mode():  # the log-probs kept while decoding equal a separate scoring pass
        scored = score(model, prompts, [tokens for tokens, _ in ours])
    assert [lp for _, lp in ours] == pytest.approx(scored, abs=1e-4)


@pytest.mark.train  # uses the trained round
def test_a_candidate_is_reproducible_alone_from_its_record(trained_round, candidates) -> None:  # noqa: F811
    from loop.models import load_generation_model
    from loop.phases.generate import regenerate

    _, rows = candidates
    model, tok = load_generation_model(trained_round.model.round_dir)
    checked = 0
    for r in rows[::3]:
        for c in r.candidates:
            spec = c.settings[0]
            if spec.kind == "sample":
                text = regenerate(model, tok, r.context, spec, r.example_id, r.turn, SETTINGS.max_new_tokens)
                assert text == c.text
                checked += 1
    assert checked >= 3


def test_uniform_is_uniform_and_batch_independent() -> None:
    import torch

    from loop.phases.generate import _uniform

    seeds = torch.arange(20000, dtype=torch.int64) * 7919
    u = _uniform(seeds, 3)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    assert torch.equal(_uniform(seeds[5:6], 3), u[5:6]) and not torch.equal(_uniform(seeds, 4), u)


@pytest.mark.train  # uses the trained round
def test_a_huge_answer_is_capped_not_hung_on(trained_round, tmp_path: Path) -> None:  # noqa: F811
    import time

    from loop.data import Example
    from loop.phases.generate import generate_candidates

    huge = "x = 1; " * 150_000  # ~1 MB
    examples = [
        Example("huge", [{"role": "user", "content": "What?"}, {"role": "assistant", "content": huge}])
    ]
    examples.append(
        Example("ctx", [{"role": "user", "content": huge}, {"role": "assistant", "content": "ok"}])
    )
    stats: dict[str, int] = {}
    started = time.monotonic()
    rows = generate_candidates(
        examples,
        trained_round.model.round_dir,
        SETTINGS,
        tmp_path / "c.parquet",
        progress=False,
        max_length=128,
        stats=stats,
    )
    assert time.monotonic() - started < 60
    assert (stats["truncated_prompts"], stats["truncated_answers"]) == (1, 1)
    assert len(rows) == 2 and rows[0].current_mean_logprob is not None
    auto = SETTINGS.model_copy(update={"max_new_tokens": "auto"})
    stats = {}
    generate_candidates(
        examples,
        trained_round.model.round_dir,
        auto,
        tmp_path / "a.parquet",
        progress=False,
        max_length=128,
        stats=stats,
    )
    assert stats["max_new_tokens"] == 64, "auto follows the huge answer but stays within max_length"


def test_auto_max_new_tokens_follows_the_answers_not_one_outlier() -> None:
    from loop.phases.generate import auto_max_new_tokens

    assert auto_max_new_tokens([]) == 16 and auto_max_new_tokens([3, 5]) == 16
    assert auto_max_new_tokens([80] * 10) == 104  # 1.25 x 80 = 100, up to a multiple of 8
    lengths = [40] * 199 + [1_000_000]
    assert auto_max_new_tokens(lengths) == 56, "one pasted megabyte among 200 answers is ignored"
    assert auto_max_new_tokens([40] * 50 + [1_000_000]) == 1_250_000  # 1 in 51 is above the 99th percentile


def test_auto_max_new_tokens_is_resolved_and_recorded(trained_round, tmp_path: Path) -> None:  # noqa: F811
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from loop.phases.generate import auto_max_new_tokens

    examples = train_examples()
    auto = SETTINGS.model_copy(update={"max_new_tokens": "auto"})
    stats: dict[str, int] = {}
    rows = generate_candidates(
        examples, trained_round.model.round_dir, auto, tmp_path / "c.parquet", progress=False, stats=stats
    )
    meta = json.loads(pq.read_schema(tmp_path / "c.parquet").metadata[b"pickloop"])
    assert meta["settings"]["max_new_tokens"] == stats["max_new_tokens"]
    tok = AutoTokenizer.from_pretrained(str(trained_round.model.merged_dir))
    lengths = [len(tok(r.current_answer, add_special_tokens=False)["input_ids"]) + 1 for r in rows]
    assert stats["max_new_tokens"] == auto_max_new_tokens(lengths)


@pytest.mark.train  # uses the trained round
def test_interrupted_generation_resumes_from_its_chunks(trained_round, candidates, tmp_path: Path) -> None:  # noqa: F811
    _, rows = candidates
    source, chunks, out = trained_round.model.round_dir, tmp_path / "chunks", tmp_path / "candidates.parquet"
    stats: dict[str, int] = {}
    kwargs = {"seed": 7, "progress": False, "chunks_dir": chunks, "chunk_turns": 4, "stats": stats}
    first = generate_candidates(train_examples(), source, SETTINGS, out, **kwargs)
    assert _texts(first) == _texts(
        rows
    )  # chunking changes the batches (float noise in scores), not the texts
    names = sorted(p.name for p in chunks.iterdir())
    assert names == [f"chunk-{n:05d}.parquet" for n in range(3)] and stats["chunks_written"] == 3
    (chunks / names[-1]).unlink()
    out.unlink()
    again = generate_candidates(train_examples(), source, SETTINGS, out, **kwargs)
    assert (stats["chunks_reused"], stats["chunks_written"]) == (2, 1)
    assert again == first and load_candidates(out) == first
    changed = generate_candidates(train_examples(), source, SETTINGS, out, **{**kwargs, "seed": 8})
    assert (stats["chunks_reused"], stats["chunks_written"]) == (0, 3) and _texts(changed) != _texts(rows)


def _texts(rows):
    return [(r.example_id, r.turn, [(c.text, c.count) for c in r.candidates]) for r in rows]


@pytest.mark.parametrize(("temperature", "top_p"), [(0.7, 0.9), (1.5, 0.95)])
def test_sorted_draw_samples_the_transformers_nucleus(temperature: float, top_p: float) -> None:
    """The GPU's sampler (a full sort, no host sync) has the warpers' distribution too."""
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from loop.phases.generate import _draw, _draw_sorted

    torch.manual_seed(0)
    logits = (torch.randn(1, 200) * 2).repeat(4000, 1)
    nucleus = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits[:1].clone()))
    expected = nucleus.softmax(-1)[0]
    u = torch.rand(len(logits), generator=torch.Generator().manual_seed(1))
    tokens = _draw_sorted(logits, temperature, top_p, u)
    seen = torch.bincount(tokens, minlength=200) / len(tokens)
    assert set(tokens.tolist()) <= set(expected.nonzero().flatten().tolist())
    assert (seen - expected).abs().max() < 0.03
    narrow = _draw(logits, temperature, top_p, u, 256)  # nucleus inside the top 256: the same token
    assert (tokens == narrow).float().mean() > 0.99


@pytest.mark.train  # uses the trained round
def test_every_decode_plan_gives_the_same_candidates(trained_round) -> None:  # noqa: F811
    """The GPU's plans (tokens kept on the device and checked every n steps, finished rows masked
    rather than dropped, a static cache) run on CPU too: greedy rows equal `generate`, and sampled
    rows equal the CPU plan's."""
    import torch

    from loop.models import load_generation_model
    from loop.phases.generate import DecodePlan, _decode, _end_ids

    model, tok = load_generation_model(trained_round.model.round_dir)
    end_ids = _end_ids(model, tok)
    prompts = [
        tok(tok.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True))["input_ids"]
        for ex in train_examples()
    ]
    specs = [SampleSpec("greedy"), SampleSpec("sample", 0.7, 0.95, 1), SampleSpec("sample", 1.5, 0.9, 2)]
    rows = [(p, s) for p in prompts for s in specs]
    new = 40
    seeds = [0 if s.kind == "greedy" else 1000 + i for i, (_, s) in enumerate(rows)]

    def run(plan):
        with torch.inference_mode():
            return _decode(
                model, [p for p, _ in rows], [s for _, s in rows], seeds, new, end_ids, tok.pad_token_id, plan
            )

    cpu = run(DecodePlan())
    lengths = sorted({len(tokens) for tokens, _ in cpu})
    assert len(lengths) > 3 and lengths[0] < new // 2, "rows finish at different steps (masking is exercised)"
    assert cpu == run(None), "the default plan on CPU is DecodePlan()"
    batch = tok.pad({"input_ids": prompts}, return_tensors="pt")
    with torch.inference_mode():
        generated = model.generate(**batch, do_sample=False, max_new_tokens=new, eos_token_id=end_ids)
    greedy = [generated[i, batch["input_ids"].shape[1] :].tolist() for i in range(len(prompts))]
    plans = [
        DecodePlan(check_every=4, compact_at=0.5),
        DecodePlan(check_every=3, compact_at=1.0, static=True),
        DecodePlan(check_every=8, compact_at=0.5, sort_sampling=True, static=True),
    ]
    for plan in plans:
        ours = run(plan)
        for n, ((tokens, lp), (expected, expected_lp)) in enumerate(zip(ours, cpu, strict=True)):
            if rows[n][1].kind == "greedy":
                assert tokens == greedy[n // len(specs)][: len(tokens)], plan
            elif not plan.sort_sampling:
                assert tokens == expected, plan
            assert len(tokens) == new or tokens[-1] in end_ids
            if tokens == expected:
                assert lp == pytest.approx(expected_lp, abs=1e-4)


def test_batches_follow_the_token_budget_not_only_the_row_count() -> None:
    """One long multi-turn context pads a few short ones (its budget), not 31."""
    from loop.phases.generate import decode_batches

    lengths = [40] * 31 + [3900]
    expected = [0] * 32
    old = decode_batches(lengths, expected, 4, 128, 32, None)
    assert old == [[31, *range(31)]], "without a budget: batch_size questions"
    batches = decode_batches(lengths, expected, 4, 128, 32, 65536)
    assert batches[0] == [31, 0, 1, 2], "4 questions x 4 rows x (3900 + 128) tokens fit 65536"
    assert batches[1] == list(range(3, 31)), "the short ones together: 28 x 4 x 168 tokens"
    for batch in batches:
        width = max(lengths[i] for i in batch) + 128
        assert len(batch) == 1 or len(batch) * 4 * width <= 65536
        assert len(batch) <= 32
    assert decode_batches([10] * 8, [0] * 8, 4, 16, 3, 10**9) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert decode_batches([10] * 4, [0] * 4, 4, 16, 32, 4 * 26 * 2) == [[0, 1], [2, 3]]


@pytest.mark.slow  # torch.compile takes a minute on 2 cores
def test_the_compiled_decoder_gives_the_same_tokens(tmp_path: Path) -> None:
    """`generate.compile`'s path (static cache, compiled one-token step) runs on CPU as well (without
    CUDA graphs), so its inputs and cache handling are checked here, not first on a GPU."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from loop.phases.generate import DecodePlan, _decode

    config = Qwen2Config(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    specs = [SampleSpec("greedy"), SampleSpec("sample", 1.0, 0.9, 1), SampleSpec("sample", 0.7, 0.95, 2)]
    args = (prompts, specs, [0, 11, 12], 20, [3], 0)
    with torch.inference_mode():
        eager = _decode(model, *args, plan=DecodePlan(check_every=4, static=True))
        compiled = _decode(model, *args, plan=DecodePlan(check_every=4, static=True, compile=True))
    assert [t for t, _ in compiled] == [t for t, _ in eager]
    assert [lp for _, lp in compiled] == pytest.approx([lp for _, lp in eager], abs=1e-4)
