"""The round dataset schema, built without a server (the SDK only needs a client object)."""

from __future__ import annotations

import uuid

import argilla as rg
import pytest

from argilla_setup import schema
from argilla_setup.schema import SchemaOptions, round_settings
from loop.errors import ConfigError


def _names(items) -> list[str]:
    return [item.name for item in items]


def test_single_turn_settings_have_question_slots_ranking_and_options() -> None:
    s = round_settings(3, 4, SchemaOptions(min_submitted=2))
    assert _names(s.fields) == ["question", "candidate_1", "candidate_2", "candidate_3", "candidate_4"]
    assert isinstance(s.fields[0], rg.TextField)
    assert _names(s.questions) == ["ranking", "better_answer", "none_acceptable"]
    ranking = s.questions[0]
    assert isinstance(ranking, rg.RankingQuestion)
    assert ranking.required is True
    assert ranking.values == ["candidate_1", "candidate_2", "candidate_3", "candidate_4"]
    better = s.questions[1]
    assert isinstance(better, rg.TextQuestion) and better.required is False
    none_q = s.questions[2]
    assert isinstance(none_q, rg.LabelQuestion) and none_q.required is False
    assert set(none_q.labels) == {schema.NONE_ACCEPTABLE_YES, schema.NONE_ACCEPTABLE_NO}
    assert s.distribution.min_submitted == 2
    assert s.allow_extra_metadata is False


def test_multi_turn_uses_a_chat_field() -> None:
    s = round_settings(1, 2, SchemaOptions(multi_turn=True))
    assert isinstance(s.fields[0], rg.ChatField)
    assert s.fields[0].name == schema.CONVERSATION_FIELD
    assert "conversation so far" in s.guidelines


def test_optional_questions_can_be_left_out() -> None:
    s = round_settings(1, 3, SchemaOptions(edit_question=False, none_acceptable=False))
    assert _names(s.questions) == ["ranking"]
    assert "Better answer" not in s.guidelines
    assert "None acceptable" not in s.guidelines


def test_metadata_is_all_visible_and_names_no_option() -> None:
    """Provenance (original slot, model, temperature of each option) never goes to Argilla, not even
    as hidden metadata: it lives in the push plan only. Every declared property is for annotators."""
    s = round_settings(2, 3, SchemaOptions(sources=("faq", "extra")))
    assert {m.name for m in s.metadata} == {"round", "source", "example_id", "turn"}
    assert all(m.visible_for_annotators for m in s.metadata)
    assert not any("candidate" in m.name or "original" in m.name for m in s.metadata)
    by_name = {m.name: m for m in s.metadata}
    assert by_name["source"].options == ["faq", "extra"]


def test_guidelines_tell_labelers_what_to_do() -> None:
    text = round_settings(5, 4).guidelines
    assert text.startswith("# Round 5: rank the candidate answers")
    for phrase in ("best (rank 1) to worst", "Ties are allowed", "Better answer", "Discard", "Submit"):
        assert phrase in text


@pytest.mark.parametrize("k", [2, 50])
def test_k_bounds_accepted(k: int) -> None:
    s = round_settings(1, k)
    assert len(s.questions[0].values) == k
    assert len(s.fields) == k + 1


@pytest.mark.parametrize("k", [0, 1, 51, 100, -3, True, 2.0, "4"])
def test_k_outside_2_to_50_is_a_clear_error(k) -> None:
    with pytest.raises(ConfigError, match="between 2 and 50") as info:
        round_settings(1, k)
    assert isinstance(info.value, ValueError)


def test_bad_round_and_min_submitted_are_errors() -> None:
    with pytest.raises(ConfigError, match="round"):
        round_settings(-1, 4)
    with pytest.raises(ConfigError, match="min_submitted"):
        round_settings(1, 4, SchemaOptions(min_submitted=0))


def test_building_settings_offline_does_not_set_the_sdk_default_client() -> None:
    before = rg.Argilla._default_client
    round_settings(1, 2)
    assert rg.Argilla._default_client is before


def test_record_ids_are_deterministic_and_parse_back() -> None:
    rid = schema.record_external_id("demo", 2, "faq-17", 1)
    assert rid == "demo/r2/faq-17/t1"
    assert schema.record_external_id("demo", 2, "faq-17", 1) == rid
    assert schema.parse_record_external_id(rid) == ("demo", 2, "faq-17", 1)
    u = schema.record_uuid("demo", 2, "faq-17", 1)
    assert isinstance(u, uuid.UUID) and u == schema.record_uuid("demo", 2, "faq-17", 1)
    assert u != schema.record_uuid("demo", 3, "faq-17", 1)
    assert u != schema.record_uuid("demo", 2, "faq-17", 0)
    assert schema.dataset_name("demo", 2) == "demo-round-2"


@pytest.mark.parametrize("bad", ["", "a/b", "a b"])
def test_record_id_parts_must_be_clean(bad: str) -> None:
    with pytest.raises(ValueError):
        schema.record_external_id("run", 1, bad)
    with pytest.raises(ValueError):
        schema.record_external_id(bad or "x y", 1, "ex")


def test_parse_rejects_foreign_ids() -> None:
    with pytest.raises(ValueError, match="not a pickloop record id"):
        schema.parse_record_external_id("something-else")
