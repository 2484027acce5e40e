"""`pickloop seed-data` with a local model: the tiny model, and a round trained on it (its LoRA adapter)
to answer the seed prompt in the `Q:`/`A:` form, so the test can check structure, provenance, dedup
and resume (not quality). Plus the context check and `pickloop config check` on the produced file."""

from __future__ import annotations

import json

import pytest
from ml_fixtures import FAST_LORA, FAST_SFT, seed_round, tiny_model  # noqa: F401
from ml_fixtures import SEED_DOCS as DOCS
from ml_fixtures import SEED_TARGETS as TARGETS
from test_seed import run_main

from loop.config import load_config
from loop.data import load_examples, to_dataset
from loop.seed.backends import LocalBackend
from loop.seed.chunking import chunk_documents
from loop.seed.documents import read_documents
from loop.seed.pipeline import SeedSettings, partial_path, seed_data
from loop.seed.prompts import CONVERSATION_TEMPLATE, load_template


def _settings(template, **kw) -> SeedSettings:
    base = dict(pairs_per_chunk=1, chunk_tokens=64, overlap_tokens=8)
    return SeedSettings(template, load_template(CONVERSATION_TEMPLATE), **(base | kw))


class Stop(Exception):
    pass


def test_local_round_model_generates_resumes_and_dedups(seed_round, tmp_path) -> None:  # noqa: F811
    round_dir, template = seed_round
    backend = LocalBackend(round_dir, max_new_tokens=48, batch_size=2)
    docs, out = read_documents([DOCS]), tmp_path / "step1.jsonl"

    def stop(done: int) -> None:
        if done >= 2:
            raise Stop

    with pytest.raises(Stop):  # killed after the first batch of 2 chunks
        seed_data(docs, backend, _settings(template), out, on_batch=stop)
    assert not out.exists() and len(partial_path(out).read_text().splitlines()) == 3
    summary = seed_data(docs, backend, _settings(template), out)
    assert (summary.chunks, summary.chunks_reused, summary.chunks_generated) == (5, 2, 3)
    assert (summary.pairs_generated, summary.parse_failures) == (5, 0)
    assert (summary.duplicates_removed, summary.ungrounded_flagged, summary.kept) == (1, 1, 4)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["question"], r["answer"]) for r in rows] == [TARGETS[i] for i in (0, 1, 3, 4)]
    chunks = chunk_documents(docs, 64, 8, backend.count_tokens)
    for r, i in zip(rows, (0, 1, 3, 4), strict=True):
        c = chunks[i]
        assert (r["chunk_id"], r["doc_id"], r["char_start"], r["char_end"]) == (
            c.chunk_id,
            c.doc_id,
            c.start,
            c.end,
        )
        assert r["generator"] == str(round_dir) and r["prompt_sha256"] == template.sha256
        assert r["id"] == f"{c.chunk_id}-q0"
    assert [r["ungrounded"] for r in rows] == [False, False, False, True]
    assert not partial_path(out).exists()
    assert to_dataset(load_examples(out)).num_rows == 4


def test_cli_base_model_output_is_counted_not_fatal_per_chunk(
    tiny_model, tmp_path, capsys, monkeypatch
) -> None:  # noqa: F811
    """The untrained tiny model writes nothing parseable: every chunk is a counted parse failure and
    the run ends with one clean error, no output file."""
    out = tmp_path / "s.jsonl"
    code, _, err = run_main(
        ["seed-data", str(DOCS), "--model", str(tiny_model), "--out", str(out), "--max-new-tokens", "8"],
        capsys,
        monkeypatch,
    )
    assert code == 1 and "5 completions did not parse" in err and "Traceback" not in err
    assert not out.exists()


def test_document_larger_than_the_context(tiny_model, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "big.md").write_text("# Big\n\n" + " ".join(["widget"] * 3000))
    out = tmp_path / "s.jsonl"
    out.write_text("old\n")
    code, _, err = run_main(
        ["seed-data", str(docs), "--model", str(tiny_model), "--out", str(out), "--chunk-tokens", "4000"],
        capsys,
        monkeypatch,
    )
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1, err
    assert "big.md (characters 0-" in errors[0] and "over the model's context of 2048" in errors[0]
    assert "--chunk-tokens" in errors[0]
    assert out.read_text() == "old\n" and not partial_path(out).exists()
    # the same document with the default budget is cut into chunks that fit
    code, _, err = run_main(
        [
            "seed-data",
            str(docs),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--limit",
            "1",
            "--max-new-tokens",
            "4",
        ],
        capsys,
        monkeypatch,
    )
    assert "1 completions did not parse" in err


def test_round_one_runs_on_the_output(seed_round, tiny_model, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    """`pickloop config check` accepts the produced file, and round 1 trains and generates on it (its
    provenance columns ride along in the round's input snapshot)."""
    import yaml

    from loop.driver import Driver

    round_dir, template = seed_round
    out = tmp_path / "step1.jsonl"
    seed_data(read_documents([DOCS]), LocalBackend(round_dir, max_new_tokens=48), _settings(template), out)
    config = tmp_path / "run.yaml"
    cfg = {
        "run": {"name": "seeded", "dir": str(tmp_path / "run")},
        "data": {"path": str(out)},
        "model": {"name_or_path": str(tiny_model), "cpu_threads": 1},
        "train": {"sft": {**FAST_SFT, "num_train_epochs": 1}, "lora": FAST_LORA},
        "generate": {"k": 2, "max_new_tokens": 4},
    }
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    code, stdout, err = run_main(["config", "check", str(config)], capsys, monkeypatch)
    assert code == 0 and "OK" in stdout, err
    driver = Driver(load_config(config), progress=False)
    for phase in ("train", "regenerate", "generate"):
        driver.run_phase(1, phase)
    assert driver.state().record(1, "train").summary["examples"] == 4
    assert driver.state().record(1, "generate").summary["turns"] == 4
    snapshot = load_examples(driver.paths.round(1).input)
    assert [ex.extra["chunk_id"] for ex in snapshot] == [
        json.loads(line)["chunk_id"] for line in out.read_text().splitlines()
    ]
