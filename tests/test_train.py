from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_fixtures import (  # noqa: F401
    fast_settings,
    greedy_answers,
    multi_turn_examples,
    qa_examples,
    tiny_model,
    train_examples,
    trained_round,
)

from loop.config import ModelSettings, TrainSettings
from loop.errors import ConfigError, StateError
from loop.models import CHATML_TEMPLATE
from loop.phases.train import (
    build_lora_config,
    build_sft_config,
    ensure_generation_markers,
    load_round_model,
    make_trainer,
    train_round,
)


def _mean_answer_logprob(source: Path, examples) -> float:
    import torch

    from loop.models import load_generation_model
    from loop.phases.generate import score

    model, tok = load_generation_model(source)
    prompts, answers = [], []
    for ex in examples:
        for i in ex.assistant_turns():
            text = tok.apply_chat_template(ex.messages[:i], tokenize=False, add_generation_prompt=True)
            prompts.append(tok(text, add_special_tokens=False)["input_ids"])
            answers.append(
                tok(ex.messages[i]["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            )
    with torch.inference_mode():
        scores = score(model, prompts, answers)
    return sum(scores) / len(scores)


@pytest.mark.train
def test_training_learns_the_answers(trained_round, tiny_model: Path) -> None:  # noqa: F811
    result = trained_round
    assert result.first_loss / result.final_loss > 20, (result.first_loss, result.final_loss)
    examples = qa_examples(8)
    answers = greedy_answers(result.model.round_dir, examples)
    reproduced = sum(a == ex.messages[-1]["content"] for a, ex in zip(answers, examples, strict=True))
    assert reproduced >= 6, answers
    # the untrained model reproduces none
    assert not any(
        a == ex.messages[-1]["content"]
        for a, ex in zip(greedy_answers(tiny_model, examples), examples, strict=True)
    )


@pytest.mark.train
def test_round_artifacts(trained_round, tiny_model: Path) -> None:  # noqa: F811
    rm = trained_round.model
    names = sorted(p.name for p in rm.round_dir.iterdir())
    assert names == ["adapter", "merged", "metrics.json", "train_config.json"]  # no .train.partial left
    config = json.loads((rm.round_dir / "train_config.json").read_text())
    assert config["base_model"] == str(tiny_model.resolve()) == rm.base_model
    assert config["strategy"] == "from_base" and config["sft"]["learning_rate"] == 1e-2
    assert config["sft"]["assistant_only_loss"] is True and config["sft"]["use_cpu"] is True
    assert config["sft"]["bf16"] is False and config["sft"]["report_to"] == []
    assert config["lora"]["r"] == 32 and set(config["lora"]["modules_to_save"]) == {"lm_head", "embed_tokens"}
    metrics = json.loads((rm.round_dir / "metrics.json").read_text())
    assert len(metrics["losses"]) == 120 and metrics["losses"][-1]["loss"] == trained_round.final_loss
    assert json.loads((rm.merged_dir / "config.json").read_text())["use_cache"] is True
    adapter_config = json.loads((rm.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model.resolve())
    assert load_round_model(rm.round_dir) == rm


def test_unfinished_round_is_not_loaded(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"half")
    with pytest.raises(StateError, match="no finished training"):
        load_round_model(tmp_path)


@pytest.mark.train
def test_killed_run_leaves_no_finished_round(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    from trl import SFTTrainer

    model = ModelSettings(name_or_path=str(tiny_model))
    real_train = SFTTrainer.train

    def killed(self, *args, **kwargs):
        self.save_model(str(Path(self.args.output_dir).parent / "adapter"))  # a half-done adapter
        raise KeyboardInterrupt

    monkeypatch.setattr(SFTTrainer, "train", killed)
    round_dir = tmp_path / "round-1"
    with pytest.raises(KeyboardInterrupt):
        train_round(qa_examples(4), model, fast_settings(num_train_epochs=1), round_dir)
    assert [p.name for p in round_dir.iterdir()] == [".train.partial"]  # nothing in place
    with pytest.raises(StateError):
        load_round_model(round_dir)
    monkeypatch.setattr(SFTTrainer, "train", real_train)
    train_round(qa_examples(4), model, fast_settings(num_train_epochs=1), round_dir)  # re-run cleans up
    assert sorted(p.name for p in round_dir.iterdir()) == [
        "adapter",
        "merged",
        "metrics.json",
        "train_config.json",
    ]


def test_labels_cover_exactly_the_assistant_turns(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    examples = multi_turn_examples()
    trainer, base = make_trainer(
        examples, ModelSettings(name_or_path=str(tiny_model)), fast_settings(), tmp_path
    )
    tok = trainer.processing_class
    assert base == str(tiny_model.resolve())
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))])
    for row, ex in enumerate(examples):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        trained = tok.decode(ids[labels != -100])
        expected = "".join(ex.messages[i]["content"] + "<|im_end|>" for i in ex.assistant_turns())
        assert trained == expected
        assert (labels[labels != -100] == ids[labels != -100]).all()


@pytest.mark.train
def test_token_budget_packs_examples_padding_free_with_the_same_labels(
    tiny_model: Path, tmp_path: Path
) -> None:  # noqa: F811
    """train.batch_tokens: one packed row per step, no padding, sequences told apart by position ids,
    and exactly the tokens the padded batch trains on."""
    import torch

    examples = multi_turn_examples() + qa_examples(8)
    model = ModelSettings(name_or_path=str(tiny_model))
    padded, _ = make_trainer(examples, model, fast_settings(), tmp_path / "padded")
    packed, _ = make_trainer(
        examples, model, fast_settings().model_copy(update={"batch_tokens": 512}), tmp_path / "packed"
    )
    assert packed.args.packing and packed.args.per_device_train_batch_size == 1
    batches = list(packed.get_train_dataloader())
    assert all(b["input_ids"].shape[0] == 1 and b["input_ids"].shape[1] <= 512 for b in batches)
    assert all("attention_mask" not in b for b in batches)
    starts = sum(int((b["position_ids"][0] == 0).sum()) for b in batches)
    assert starts == len(examples) and len(batches) < len(examples) / 2

    def trained(batch) -> list[int]:
        return batch["input_ids"][batch["labels"] != -100].tolist()

    one = padded.data_collator([padded.train_dataset[i] for i in range(len(examples))])
    assert sorted(trained(one)) == sorted(t for b in batches for t in trained(b))
    assert all(
        torch.equal(b["labels"][b["labels"] != -100], b["input_ids"][b["labels"] != -100]) for b in batches
    )


def test_generation_markers_added_to_plain_chatml(tiny_model: Path) -> None:  # noqa: F811
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
        " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    ensure_generation_markers(tok)
    assert tok.chat_template == CHATML_TEMPLATE

    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ConfigError, match="cannot add them") as info:
        ensure_generation_markers(tok)
    assert info.value.key == "train.sft.assistant_only_loss"


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        # loop.config rejects these at load time (tests/test_config.py); built unvalidated, the
        # TRL/PEFT constructors' own errors still come back as a ConfigError naming the section
        (TrainSettings.model_construct(sft={"learning_rat": 1e-3}, lora={}), "train.sft", "learning_rat"),
        (TrainSettings.model_construct(sft={}, lora={"rank": 8}), "train.lora", "rank"),
        (TrainSettings.model_construct(sft={"output_dir": "x"}, lora={}), "train.sft", "output_dir"),
        (TrainSettings.model_construct(sft={"lr_scheduler_type": "zigzag"}, lora={}), "train.sft", "zigzag"),
    ],
)
def test_bad_sft_and_lora_keys(settings: TrainSettings, key: str, words: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        build_sft_config(settings, tmp_path, 0)
        build_lora_config(settings)
    assert info.value.key == key


def test_config_rejects_unknown_passthrough_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="learning_rate"):
        TrainSettings(sft={"learning_rat": 1e-3})
    with pytest.raises(ValidationError, match="cannot be set"):
        TrainSettings(sft={"output_dir": "x"})


def test_every_field_passes_through(tmp_path: Path) -> None:
    settings = TrainSettings(sft={"weight_decay": 0.1, "max_length": 64}, lora={"r": 4, "lora_dropout": 0.1})
    sft, lora = build_sft_config(settings, tmp_path, 5), build_lora_config(settings)
    assert (sft.weight_decay, sft.max_length, sft.seed, sft.use_cpu, sft.output_dir) == (
        0.1,
        64,
        5,
        True,
        str(tmp_path),
    )
    assert (lora.r, lora.lora_dropout, lora.target_modules) == (4, 0.1, "all-linear")


def test_later_round_fields_override_only_later_rounds(tmp_path: Path) -> None:
    settings = TrainSettings(
        sft={"num_train_epochs": 20, "learning_rate": 1e-3}, sft_later_rounds={"num_train_epochs": "6"}
    )
    first, later = build_sft_config(settings, tmp_path, 0), build_sft_config(settings, tmp_path, 0, later_round=True)
    assert (first.num_train_epochs, later.num_train_epochs) == (20, 6)
    assert first.learning_rate == later.learning_rate == 1e-3
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sft_later_rounds(.|\n)*did you mean 'learning_rate'"):
        TrainSettings(sft_later_rounds={"learnin_rate": 1})


@pytest.mark.train
def test_continue_and_merge_and_stack_improve(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    examples = train_examples()
    model = ModelSettings(name_or_path=str(tiny_model))
    short = {"num_train_epochs": 4}
    first = train_round(examples, model, fast_settings(**short), tmp_path / "round-1", seed=0)
    before = _mean_answer_logprob(first.model.round_dir, examples)
    for strategy in ("continue", "merge_and_stack"):
        settings = fast_settings(strategy, **short).model_copy(update={"sft_later_rounds": {"num_train_epochs": 5}})
        result = train_round(
            examples,
            model,
            settings,
            tmp_path / strategy,
            previous=first.model,
            seed=1,
        )
        after = _mean_answer_logprob(result.model.round_dir, examples)
        assert after > before + 0.3, (strategy, before, after)
        assert result.first_loss < first.first_loss
        expected_base = str(tiny_model.resolve()) if strategy == "continue" else str(first.model.merged_dir)
        assert result.model.base_model == expected_base
        assert result.model.strategy == strategy
        trained = json.loads((result.model.round_dir / "train_config.json").read_text())["sft"]
        assert trained["num_train_epochs"] == 5, "sft_later_rounds applies to a round that continues"
    assert json.loads((first.model.round_dir / "train_config.json").read_text())["sft"]["num_train_epochs"] == 4
    with pytest.raises(StateError, match="merge_and_stack"):
        no_merged = first.model.__class__(**{**first.model.__dict__, "merged_dir": None})
        make_trainer(examples, model, fast_settings("merge_and_stack"), tmp_path / "x", previous=no_merged)


@pytest.mark.train
def test_adapter_reload_and_merged_give_identical_outputs(trained_round, tiny_model: Path) -> None:  # noqa: F811
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rm = trained_round.model
    tok = AutoTokenizer.from_pretrained(rm.adapter_dir, padding_side="left")
    base = AutoModelForCausalLM.from_pretrained(rm.base_model, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(rm.adapter_dir)).eval()
    merged = AutoModelForCausalLM.from_pretrained(rm.merged_dir, dtype=torch.float32).eval()
    prompts = [
        tok.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True)
        for ex in qa_examples(4)
    ]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        torch.testing.assert_close(adapted(**batch).logits, merged(**batch).logits, atol=1e-4, rtol=1e-4)
        a = adapted.generate(**batch, do_sample=False, max_new_tokens=32)
        m = merged.generate(**batch, do_sample=False, max_new_tokens=32)
    assert torch.equal(a, m)


def test_long_conversations_train_every_assistant_turn(tiny_model: Path) -> None:  # noqa: F811
    from transformers import AutoTokenizer

    from loop.data import Example
    from loop.phases.train import window_examples

    tok = AutoTokenizer.from_pretrained(tiny_model)
    long = "Python is a programming language that lets you work quickly. " * 4
    messages = [{"role": "system", "content": "Be brief."}]
    for n in range(3):
        messages += [
            {"role": "user", "content": f"Question {n}? " + long},
            {"role": "assistant", "content": f"Answer {n}. " + long},
        ]
    huge = Example("huge", [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": long * 20}])
    windows = window_examples([Example("long", messages), *multi_turn_examples(), huge], tok, 400)
    assert (windows.windowed_turns, windows.truncated_turns) == (3, 1)
    trained = [
        tok.decode([i for i, m in zip(r["input_ids"], r["assistant_masks"], strict=True) if m])
        for r in windows.rows
    ]
    for n in range(3):  # every assistant turn is trained, exactly once
        assert sum(f"Answer {n}. " + long + "<|im_end|>" in t for t in trained) == 1
    assert all(len(r["input_ids"]) <= 400 for r in windows.rows)
    assert len(windows.rows) == 2 + 2 + 1  # turns 0-1 in one window, turn 2 with context in another
