"""argilla_setup.patches: the guard refuses a patch whose upstream changed, and every patch applied
to the real embedded server is on the path it claims (counted by the server process itself)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from argilla_setup import patches, rankings
from argilla_setup.connection import Api, Connection
from argilla_setup.patches import Patch
from argilla_setup.schema import SchemaOptions
from argilla_setup.users import add_users
from loop import annotate

REAL = "argilla_server.api.handlers.v1.info:get_status"


def _patch_info(api: Api) -> dict:
    return api.get("/api/v1" + patches.INFO_PATH)


def test_every_patch_is_applied_and_reached_during_a_round(argilla_stack, tmp_path) -> None:
    owner = Api(Connection(argilla_stack.api_url, argilla_stack.api_key))
    before = _patch_info(owner)
    assert before["refused"] == {} and before["argilla_server"] == patches.ARGILLA_SERVER_VERSION
    assert set(before["applied"]) == {p.name for p in patches.registry()}

    ws = "patches-ws"
    (ann,) = add_users(owner, ["patches-ann"], workspace=ws, create_workspace=True, home=tmp_path)
    item = annotate.RoundItem(
        "ex-0", 0, ({"role": "user", "content": "q?"},), "orig", (annotate.Candidate("gen", "m"),)
    )
    plan = annotate.plan_records([item], run="patches", round_n=1, slots=2, seed=0, key="k")
    result = annotate.push(
        owner.conn,
        plan,
        round_dir=tmp_path,
        run="patches",
        round_n=1,
        workspace=ws,
        slots=2,
        options=SchemaOptions(),
        progress=False,
    )
    creds = Api(Connection(argilla_stack.api_url, json.loads(ann.credentials_file.read_text())["api_key"]))
    (rec,) = owner.get(f"/api/v1/datasets/{result.dataset_id}/records")["items"]
    rankings.submit_response(creds, rec["id"], rankings.response_values(["candidate_1", "candidate_2"]))
    creds.get(f"/api/v1/records/{rec['id']}")  # record_privacy
    httpx.get(f"{argilla_stack.api_url}/api/v1/status")  # status_paths
    annotate.pull(owner.conn, result.dataset_id, plan)  # rankings_route
    after = _patch_info(owner)

    assert after["hits"].get("sqlite_wal", 0) >= 1  # once per new database connection
    for name in (
        "type_adapters",
        "webhook_events",
        "validator_record",
        "rankings_route",
        "record_privacy",
        "status_paths",
    ):
        assert after["hits"].get(name, 0) > before["hits"].get(name, 0), name


def test_patches_info_is_owner_only(argilla_stack) -> None:
    r = httpx.get(f"{argilla_stack.api_url}/api/v1{patches.INFO_PATH}")
    assert r.status_code == 401


def test_recorded_hashes_match_the_installed_argilla_server() -> None:
    for patch in patches.registry():
        assert patches.check(patch) == [], patch.name


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch):
    """A registry of harmless patches, and empty applied/refused state."""
    calls: list[str] = []
    good = patches.source_hash(REAL)
    registry = [
        Patch("fast_ok", lambda: calls.append("fast_ok"), {REAL: good}),
        Patch("fast_stale", lambda: calls.append("fast_stale"), {REAL: "0" * 64}),
        Patch("secure_ok", lambda: calls.append("secure_ok"), {REAL: good}, required=True),
    ]
    monkeypatch.setattr(patches, "registry", lambda: registry)
    monkeypatch.setattr(patches, "APPLIED", [])
    monkeypatch.setattr(patches, "REFUSED", {})
    monkeypatch.delenv(patches.NO_SPEEDUPS_ENV, raising=False)
    return calls, registry


def test_a_changed_upstream_is_refused_with_a_warning(fresh, caplog) -> None:
    calls, _ = fresh
    with caplog.at_level(logging.WARNING, logger="pickloop.patches"):
        assert patches.apply(server=False) == ("fast_ok", "secure_ok")
    assert calls == ["fast_ok", "secure_ok"]
    assert "fast_stale" in caplog.text and REAL in caplog.text and "changed upstream" in caplog.text
    assert "fast_stale" in patches.REFUSED


def test_another_argilla_version_refuses_everything(fresh) -> None:
    _, registry = fresh
    for patch in registry:
        (problem,) = patches.check(patch, installed="2.9.0")
        assert "2.9.0" in problem and "2.8.0" in problem


def test_a_refused_security_patch_stops_the_process(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, registry = fresh
    registry.append(Patch("secure_stale", lambda: calls.append("x"), {REAL: "0" * 64}, required=True))
    with pytest.raises(patches.PatchRefusedError, match="secure_stale"):
        patches.apply(server=False)
    assert "x" not in calls


def test_no_speedups_keeps_security_patches(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, _ = fresh
    monkeypatch.setenv(patches.NO_SPEEDUPS_ENV, "1")
    assert patches.apply(server=False) == ("secure_ok",)
    assert calls == ["secure_ok"]
    assert patches.REFUSED["fast_ok"] == "PICKLOOP_NO_SPEEDUPS is set"


def test_server_only_patches_are_skipped_in_the_worker(fresh) -> None:
    calls, registry = fresh
    registry.append(Patch("route", lambda: calls.append("route"), {}, server_only=True))
    patches.apply(server=False)
    assert "route" not in calls
