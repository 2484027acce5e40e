"""The demo's step-1 data: the shipped FAQ with a seeded fraction of answers degraded, references kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loop.data import Example, load_jsonl, write_jsonl
from loop.demo.data import KINDS, degrade, faq_path, load_demo_data, short_answer


@pytest.fixture(scope="module")
def faq() -> list[Example]:
    return load_jsonl(faq_path())


def answer(ex: Example) -> str:
    return ex.messages[-1]["content"]


def test_same_seed_same_data_other_seed_other_choice(faq: list[Example]) -> None:
    a, b = degrade(faq, 0.4, seed=3), degrade(faq, 0.4, seed=3)
    assert a == b
    other = degrade(faq, 0.4, seed=4)
    assert set(other.degraded) != set(a.degraded)
    assert len(other.degraded) == len(a.degraded)


def test_the_data_does_not_depend_on_the_process(tmp_path: Path) -> None:
    """Ids and texts of the degraded answers are the same in a fresh process with another hash seed."""
    code = (
        "import json, sys; from loop.demo.data import load_demo_data; d = load_demo_data(0.4, seed=7); "
        "json.dump([d.degraded, [ex.messages[-1]['content'] for ex in d.examples]], sys.stdout)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = load_demo_data(0.4, seed=7)
    assert json.loads(out.stdout) == [here.degraded, [answer(ex) for ex in here.examples]]


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.4, 1.0])
def test_the_configured_fraction_is_degraded(faq: list[Example], fraction: float) -> None:
    # Several seeds: the FAQ has a three-word answer ("See the unicode-howto.") that only a swap can
    # change, so some seeds draw a kind that cannot degrade it.
    for seed in range(8):
        demo = degrade(faq, fraction, seed=seed)
        assert len(demo.degraded) == round(fraction * len(faq)), seed
        changed = {ex.id for ex, orig in zip(demo.examples, faq, strict=True) if answer(ex) != answer(orig)}
        assert changed == set(demo.degraded)


def test_each_kind_of_degradation_is_what_it_says(faq: list[Example]) -> None:
    demo = degrade(faq, 1.0, seed=0)
    by_id = {ex.id: ex for ex in demo.examples}
    answers = {answer(ex) for ex in faq}
    assert set(demo.degraded.values()) == set(KINDS)
    for ex_id, kind in demo.degraded.items():
        new, ref = answer(by_id[ex_id]), demo.references[ex_id]
        assert new.strip() != ref.strip()
        if kind == "swapped":
            assert new in answers  # another question's real answer
        elif kind == "truncated":
            words = ref.split()
            assert new.split() == words[: len(new.split())] and 3 <= len(new.split()) < len(words)
        else:
            assert ref.strip().startswith(new) and new[-1] in ".!?"


def test_references_are_the_untouched_answers_and_questions_stay(faq: list[Example]) -> None:
    demo = degrade(faq, 0.4, seed=0)
    assert demo.references == {ex.id: answer(ex) for ex in faq}
    assert [ex.id for ex in demo.examples] == [ex.id for ex in faq]
    for ex, orig in zip(demo.examples, faq, strict=True):
        assert ex.messages[:-1] == orig.messages[:-1] and ex.extra == orig.extra
        if ex.id not in demo.degraded:
            assert ex == orig


def test_degraded_rows_load_back_through_the_data_loader(tmp_path: Path) -> None:
    demo = load_demo_data(0.5, seed=1, limit=20)
    path = write_jsonl(demo.examples, tmp_path / "step1.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"id", "messages", "source"} for r in rows)
    assert load_jsonl(path) == demo.examples
    assert len(demo.examples) == 20 and len(demo.degraded) == 10


def test_limit_takes_the_first_entries(faq: list[Example]) -> None:
    demo = load_demo_data(0.0, limit=5, short=False)
    assert demo.examples == faq[:5] and demo.degraded == {}


def test_short_answers_keep_the_opening_and_the_example_it_introduces(faq: list[Example]) -> None:
    assert short_answer("One.\n\nTwo.") == "One."
    assert short_answer("Like this::\n\n   x = 1\n\nMore.") == "Like this::\n\n   x = 1"
    assert short_answer("a:\n\nb:\n\nc:\n\nd") == "a:\n\nb:\n\nc:", "at most three paragraphs"
    demo = load_demo_data(0.0)
    for ex, whole in zip(demo.examples, faq, strict=True):
        assert answer(whole).strip().startswith(answer(ex)) and answer(ex).strip()
    assert demo.references == {ex.id: answer(ex) for ex in demo.examples}
    shorter = sum(len(answer(ex)) < len(answer(whole)) for ex, whole in zip(demo.examples, faq, strict=True))
    assert shorter > len(faq) // 2


def test_a_single_example_can_still_be_degraded(faq: list[Example]) -> None:
    """Nothing to swap with: every seed must still give a degraded answer, never an error."""
    for seed in range(12):
        demo = degrade(faq[:1], 1.0, seed=seed)
        assert demo.degraded[faq[0].id] in ("truncated", "first_sentence")
        assert answer(demo.examples[0]) != answer(faq[0])


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_a_fraction_outside_0_1_is_refused(faq: list[Example], fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be within 0..1"):
        degrade(faq, fraction)
