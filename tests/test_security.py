"""The ranking is blind by every route, and the embedded stack is locked down.

Two real annotators rank a round pushed by `loop.annotate.push`; then one of them walks every route
the embedded server offers (the list is read from argilla-server's router, with pickloop's patches
applied, so a route added upstream and not walked here fails the test). No answer may reveal which
option is the original or which model made it, nor another annotator's response.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from argilla_setup import rankings, schema, server
from argilla_setup.connection import Api, Connection
from argilla_setup.schema import SchemaOptions
from argilla_setup.users import add_users
from loop import annotate

MODEL = "secret-model-x@round-1"
K = 3
VISIBLE_META = {schema.META_ROUND, schema.META_SOURCE, schema.META_EXAMPLE_ID, schema.META_TURN}
# Strings whose presence in any answer would reveal provenance.
TELLTALES = (MODEL, "secret-model", "original_slot", "_model", "_temperature", "mean_logprob")
# Value scores are owners' metadata (`argilla.score_metadata`): no annotator route may show them.
HIDDEN_SCORES = {"value": 0.75, "ifd_round": 1.125, "disagreement": 0.375, "current_logprob": -1.5}
SCORE_TELLTALES = ("ifd_round", "disagreement", "current_logprob", "1.125", "0.375")

# Routes an annotator may call that cannot return records, responses or metadata (writes refused to
# annotators, login flows, docs). Everything else is walked below.
EXEMPT = {
    ("POST", "/api/v1/token"): "login",
    ("GET", "/api/v1/oauth2/providers/{provider}/authentication"): "login flow",
    ("GET", "/api/v1/oauth2/providers/{provider}/access-token"): "login flow",
    ("GET", "/api/v1/openapi.json"): "schema",
    ("GET", "/api/v1/docs"): "docs",
    ("GET", "/api/v1/docs/oauth2-redirect"): "docs",
    ("GET", "/api/v1/redoc"): "docs",
    ("GET", "/api/v1/jobs/{job_id}"): "job status of an owner's import/export",
    ("POST", "/api/v1/datasets"): "owner/admin write",
    ("POST", "/api/v1/datasets/{dataset_id}/fields"): "owner/admin write",
    ("POST", "/api/v1/datasets/{dataset_id}/metadata-properties"): "owner/admin write",
    ("POST", "/api/v1/datasets/{dataset_id}/vectors-settings"): "owner/admin write",
    ("POST", "/api/v1/datasets/{dataset_id}/questions"): "owner/admin write",
    ("PUT", "/api/v1/datasets/{dataset_id}/publish"): "owner/admin write",
    ("PATCH", "/api/v1/datasets/{dataset_id}"): "owner/admin write",
    ("POST", "/api/v1/datasets/{dataset_id}/import"): "owner/admin write",
    ("PATCH", "/api/v1/fields/{field_id}"): "owner/admin write",
    ("PATCH", "/api/v1/questions/{question_id}"): "owner/admin write",
    ("PATCH", "/api/v1/metadata-properties/{metadata_property_id}"): "owner/admin write",
    ("PATCH", "/api/v1/vectors-settings/{vector_settings_id}"): "owner/admin write",
    ("POST", "/api/v1/users"): "owner write",
    ("PATCH", "/api/v1/users/{user_id}"): "owner write",
    ("POST", "/api/v1/workspaces"): "owner write",
    ("POST", "/api/v1/workspaces/{workspace_id}/users"): "owner write",
    ("POST", "/api/v1/webhooks"): "owner write",
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): "owner write",
    ("POST", "/api/v1/webhooks/{webhook_id}/ping"): "owner write",
}


def server_routes(home: Path) -> set[tuple[str, str]]:
    """(method, path) of every API route of the embedded server, patches applied (a subprocess with
    the server's settings, because argilla-server reads them at import)."""
    code = (
        "import json\n"
        "from argilla_setup import patches\n"
        "import argilla_setup.search.engine\n"
        "patches.apply(server=True)\n"
        "from argilla_server.api.routes import api_v1\n"
        "print(json.dumps([[m, '/api/v1' + r.path] for r in api_v1.routes for m in getattr(r, 'methods', ())]))\n"
    )
    env = {
        **os.environ,
        "ARGILLA_HOME_PATH": str(home),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{home}/routes.db",
        "ARGILLA_SEARCH_ENGINE": server.ENGINE_NAME,
        "PICKLOOP_SEARCH_DB": str(home / "routes-search.sqlite3"),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    routes = json.loads(out.stdout.strip().splitlines()[-1])
    return {(m, p) for m, p in routes if m not in ("HEAD", "DELETE")}


@pytest.fixture(scope="module")
def blind(argilla_stack, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("sec")
    owner = Api(Connection(argilla_stack.api_url, argilla_stack.api_key))
    ws = f"sec-{os.urandom(3).hex()}"
    alice, bob = add_users(
        owner, [f"alice-{ws}", f"bob-{ws}"], workspace=ws, create_workspace=True, home=home
    )
    items = [
        annotate.RoundItem(
            f"ex-{i}",
            0,
            ({"role": "user", "content": f"Question {i}?"},),
            f"original answer {i}",
            (
                annotate.Candidate(f"model answer {i}a", MODEL, 0.0, {"kind": "greedy"}, -0.5),
                annotate.Candidate(f"model answer {i}b", MODEL, 0.7, {"kind": "sample"}, -0.9),
            ),
            scores=HIDDEN_SCORES,
        )
        for i in range(3)
    ]
    plan = annotate.plan_records(items, run=ws, round_n=1, slots=K, seed=0, key="k")
    annotate.write_plan(home, plan)
    result = annotate.push(
        owner.conn,
        plan,
        round_dir=home,
        run=ws,
        round_n=1,
        workspace=ws,
        slots=K,
        options=SchemaOptions(min_submitted=2, score_metadata=True),
        suggest=True,
        progress=False,
    )
    apis = {
        u.name: Api(Connection(argilla_stack.api_url, json.loads(u.credentials_file.read_text())["api_key"]))
        for u in (alice, bob)
    }
    records = owner.get(f"/api/v1/datasets/{result.dataset_id}/records", params={"limit": 50})["items"]
    for name, api in apis.items():
        for rec in records:
            order = ["candidate_1", "candidate_2", "candidate_3"]
            rankings.submit_response(
                api, rec["id"], rankings.response_values(order if name == alice.name else order[::-1])
            )
    return {
        "dataset_id": result.dataset_id,
        "records": records,
        "plan": plan,
        "alice": apis[alice.name],
        "alice_id": apis[alice.name].me()["id"],
        "bob_id": apis[bob.name].me()["id"],
        "ws_id": owner.workspace_by_name(ws)["id"],
        "ws": ws,
        "bob": apis[bob.name],
        "round_dir": home,
        "owner_props": owner.get(f"/api/v1/me/datasets/{result.dataset_id}/metadata-properties")["items"],
    }


def _responses(obj) -> list[dict]:
    """Every response-shaped dict (user_id + values) anywhere in a JSON answer."""
    found = []
    if isinstance(obj, dict):
        if "user_id" in obj and "values" in obj:
            found.append(obj)
        for v in obj.values():
            found += _responses(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _responses(v)
    return found


def _metadatas(obj) -> list[dict]:
    found = []
    if isinstance(obj, dict):
        if isinstance(obj.get("metadata"), dict) and "fields" in obj:
            found.append(obj["metadata"])
        for v in obj.values():
            found += _metadatas(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _metadatas(v)
    return found


def test_pull_maps_slots_back_through_the_plan(blind) -> None:
    """Argilla holds nothing about sources; the plan alone says which slot is the original."""
    owner_view = blind["records"]
    assert all(set(r["metadata"]) == VISIBLE_META | set(HIDDEN_SCORES) for r in owner_view), (
        "owners see scores"
    )
    assert all(r["metadata"]["ifd_round"] == 1.125 for r in owner_view)
    assert annotate.read_plan(blind["round_dir"])[0].original_slot in schema.slot_names(K)


def _route_walk(ids: dict, own_values: dict) -> dict[tuple[str, str], list[tuple[dict | None, list]]]:
    """Every route an annotator can call, with a body and query that reach the dataset's records."""
    search = {"query": {}}
    include = [("include", "responses"), ("include", "suggestions"), ("include", "vectors")]
    rec = ids["record_id"]
    return {
        ("GET", "/api/v1/version"): [(None, [])],
        ("GET", "/api/v1/status"): [(None, [])],
        ("GET", "/api/v1/settings"): [(None, [])],
        ("GET", "/api/v1/oauth2/providers"): [(None, [])],
        ("GET", "/api/v1/me"): [(None, [])],
        ("GET", "/api/v1/me/datasets"): [(None, [])],
        ("GET", "/api/v1/me/workspaces"): [(None, [])],
        ("GET", "/api/v1/users"): [(None, [])],
        ("GET", "/api/v1/users/{user_id}"): [(None, [])],
        ("GET", "/api/v1/users/{user_id}/workspaces"): [(None, [])],
        ("GET", "/api/v1/workspaces/{workspace_id}"): [(None, [])],
        ("GET", "/api/v1/workspaces/{workspace_id}/users"): [(None, [])],
        ("GET", "/api/v1/webhooks"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}/fields"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}/questions"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}/vectors-settings"): [(None, [])],
        ("GET", "/api/v1/me/datasets/{dataset_id}/metadata-properties"): [(None, [])],
        ("GET", "/api/v1/me/datasets/{dataset_id}/metrics"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}/progress"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}/users/progress"): [(None, [])],
        ("GET", "/api/v1/datasets/{dataset_id}/records"): [(None, include)],
        ("GET", "/api/v1/datasets/{dataset_id}/records/search/suggestions/options"): [(None, [])],
        ("POST", "/api/v1/me/datasets/{dataset_id}/records/search"): [(search, include)],
        ("POST", "/api/v1/datasets/{dataset_id}/records/search"): [(search, include)],
        ("POST", "/api/v1/datasets/{dataset_id}/records/bulk"): [({"items": []}, [])],
        ("PUT", "/api/v1/datasets/{dataset_id}/records/bulk"): [({"items": []}, [])],
        ("POST", "/api/v1/datasets/{dataset_id}/export"): [({"name": "x"}, [])],
        ("GET", "/api/v1/records/{record_id}"): [(None, [])],
        ("PATCH", "/api/v1/records/{record_id}"): [({"metadata": {}}, [])],
        ("GET", "/api/v1/records/{record_id}/suggestions"): [(None, [])],
        ("PUT", "/api/v1/records/{record_id}/suggestions"): [({}, [])],
        ("POST", "/api/v1/records/{record_id}/responses"): [({"status": "draft", "values": {}}, [])],
        ("PUT", "/api/v1/responses/{response_id}"): [({"status": "submitted", "values": own_values}, [])],
        ("POST", "/api/v1/me/responses/bulk"): [
            ({"items": [{"record_id": rec, "status": "submitted", "values": own_values}]}, [])
        ],
        ("GET", "/api/v1/x-pickloop/info"): [(None, [])],
        ("GET", "/api/v1/x-pickloop/patches"): [(None, [])],
        ("GET", "/api/v1/x-pickloop/datasets/{dataset_id}/rankings"): [(None, [])],
    }


def _walk_as_annotator(
    argilla_stack, annotator: Api, walk: dict, ids: dict, telltales: tuple[str, ...], visible_meta: set[str]
) -> dict[str, int]:
    """Call every route of `walk` as `annotator`; no answer may hold a telltale, the server's home,
    another annotator's response or metadata outside `visible_meta`. Returns each route's status."""
    seen: dict[str, int] = {}
    me = ids["user_id"]
    with httpx.Client(
        base_url=argilla_stack.api_url, headers={"X-Argilla-Api-Key": annotator.conn.api_key}
    ) as http:
        for (method, template), calls in walk.items():
            for body, params in calls:
                path_ids = dict(ids)
                params = list(params)
                if params and params[0][0] == "_id":
                    path_ids["metadata_property_id"] = params.pop(0)[1]
                path = template.format(**path_ids)
                r = http.request(method, path, json=body, params=params)
                seen[f"{method} {template}"] = r.status_code
                assert r.status_code < 500, (method, path, r.text[:300])
                text = r.text
                for word in telltales:
                    assert word not in text, (method, path, word)
                assert str(argilla_stack.home) not in text, (method, path, "server home")
                if r.headers.get("content-type", "").startswith("application/json"):
                    answer = r.json()
                    for resp in _responses(answer):
                        assert resp["user_id"] == me, (method, path, "another annotator's response")
                    for meta in _metadatas(answer):
                        assert set(meta) <= visible_meta, (method, path, meta)
    return seen


def test_every_route_is_blind_for_an_annotator(blind, argilla_stack, tmp_path: Path) -> None:
    ds, alice = blind["dataset_id"], blind["alice"]
    rec = blind["records"][0]["id"]
    me = blind["alice_id"]
    props = alice.get(f"/api/v1/me/datasets/{ds}/metadata-properties")["items"]
    assert {p["name"] for p in props} == VISIBLE_META
    own = alice.post(
        f"/api/v1/me/datasets/{ds}/records/search", json={"query": {}}, params={"include": "responses"}
    )["items"][0]["record"]["responses"][0]
    ids = {
        "dataset_id": ds,
        "record_id": rec,
        "response_id": own["id"],
        "user_id": me,
        "workspace_id": blind["ws_id"],
        "provider": "huggingface",
    }
    walk = _route_walk(ids, own["values"])
    hidden = [p for p in blind["owner_props"] if p["name"] in HIDDEN_SCORES]
    assert len(hidden) == len(HIDDEN_SCORES) and not any(p["visible_for_annotators"] for p in hidden)
    for prop in [*props, *hidden]:  # a hidden property's id must not open its values either
        walk.setdefault(("GET", "/api/v1/metadata-properties/{metadata_property_id}/metrics"), []).append(
            (None, [("_id", prop["id"])])
        )
    routes = server_routes(tmp_path)
    unwalked = routes - set(walk) - set(EXEMPT)
    assert not unwalked, f"routes neither walked nor exempted: {sorted(unwalked)}"
    assert not set(walk) - routes, "walked routes the server does not have"

    seen = _walk_as_annotator(argilla_stack, alice, walk, ids, TELLTALES + SCORE_TELLTALES, VISIBLE_META)
    # The routes that hold records answer the annotator (the check above is not vacuous) ...
    assert seen["GET /api/v1/records/{record_id}"] == 200
    assert seen["POST /api/v1/me/datasets/{dataset_id}/records/search"] == 200
    assert seen["GET /api/v1/records/{record_id}/suggestions"] == 200
    # ... and those with everyone's responses refuse.
    for route in (
        "GET /api/v1/datasets/{dataset_id}/records",
        "POST /api/v1/datasets/{dataset_id}/records/search",
        "GET /api/v1/x-pickloop/datasets/{dataset_id}/rankings",
        "GET /api/v1/x-pickloop/patches",
    ):
        assert seen[route] == 403, route
    got = alice.get(f"/api/v1/records/{rec}")
    assert [r["user_id"] for r in got["responses"]] == [me]
    assert set(got["metadata"]) == VISIBLE_META


EVAL_MODELS = ("base", "round-9")
EVAL_TELLTALES = ("round-9", '"base"', "model_a", "model_b", "secret-eval-base-path")


@pytest.fixture(scope="module")
def blind_eval(blind, argilla_stack, tmp_path_factory: pytest.TempPathFactory):
    """An evaluation pushed by `loop.evaluation.judging.push` into the same workspace, judged by both."""
    from argilla_setup import pairwise
    from loop.evaluation import judging
    from loop.evaluation.pairs import plan_pairs
    from loop.evaluation.questions import EvalQuestion

    owner = Api(Connection(argilla_stack.api_url, argilla_stack.api_key))
    questions = [
        EvalQuestion(f"q{i}", [{"role": "user", "content": f"Eval question {i}?"}], "ref") for i in range(3)
    ]
    answers = {m: {q.id: f"answer {i} of one model" for i, q in enumerate(questions)} for m in EVAL_MODELS}
    records = plan_pairs(questions, answers, list(EVAL_MODELS), run=blind["ws"], name="sec", seed=0, key="k")
    pushed = judging.push(
        owner.conn,
        records,
        run=blind["ws"],
        name="sec",
        workspace=blind["ws"],
        min_submitted=2,
        key="plan",
        out=tmp_path_factory.mktemp("eval") / "push.json",
    )
    listed = owner.get(f"/api/v1/datasets/{pushed.dataset_id}/records", params={"limit": 50})["items"]
    for api, verdict in ((blind["alice"], pairwise.PREFER_A), (blind["bob"], pairwise.PREFER_B)):
        for rec in listed:
            rankings.submit_response(api, rec["id"], {pairwise.PREFERENCE_QUESTION: {"value": verdict}})
    return {"dataset_id": pushed.dataset_id, "records": listed, "pushed": pushed, "plan": records}


def test_every_route_is_blind_for_an_annotator_on_an_evaluation(blind, blind_eval, argilla_stack) -> None:
    """The evaluation dataset, walked like a round's: no route names the model behind Answer A or B,
    nor shows the other judge's verdict."""
    from argilla_setup import pairwise
    from loop.evaluation import judging

    ds, alice = blind_eval["dataset_id"], blind["alice"]
    rec = blind_eval["records"][0]["id"]
    own = alice.post(
        f"/api/v1/me/datasets/{ds}/records/search", json={"query": {}}, params={"include": "responses"}
    )["items"][0]["record"]["responses"][0]
    ids = {
        "dataset_id": ds,
        "record_id": rec,
        "response_id": own["id"],
        "user_id": blind["alice_id"],
        "workspace_id": blind["ws_id"],
        "provider": "huggingface",
    }
    walk = _route_walk(ids, own["values"])
    props = alice.get(f"/api/v1/me/datasets/{ds}/metadata-properties")["items"]
    assert {p["name"] for p in props} == {pairwise.META_QUESTION_ID}
    walk[("GET", "/api/v1/metadata-properties/{metadata_property_id}/metrics")] = [
        (None, [("_id", p["id"])]) for p in props
    ]
    seen = _walk_as_annotator(argilla_stack, alice, walk, ids, EVAL_TELLTALES, {pairwise.META_QUESTION_ID})
    assert seen["GET /api/v1/records/{record_id}"] == 200
    assert seen["POST /api/v1/me/datasets/{dataset_id}/records/search"] == 200
    assert seen["GET /api/v1/datasets/{dataset_id}/records"] == 403
    # The owner's pull maps A/B back to models through the local plan only.
    rows = judging.pull(
        Connection(argilla_stack.api_url, argilla_stack.api_key), blind_eval["pushed"], blind_eval["plan"]
    )
    assert len(rows) == 2 * len(blind_eval["plan"])
    assert {(r.model_a, r.model_b) for r in rows} <= {EVAL_MODELS, EVAL_MODELS[::-1]}


def test_suggestions_do_not_point_at_the_original(blind) -> None:
    """The model's suggestion ranks its own candidates; the original is placed at a secret-seeded
    rank, so over records it is not always last (nor always first)."""
    plan = {p.external_id: p for p in blind["plan"]}
    for rec in blind["records"]:
        sugg = blind["alice"].get(f"/api/v1/records/{rec['id']}/suggestions")["items"]
        (ranking,) = [s["value"] for s in sugg]
        assert {v["value"] for v in ranking} == set(plan[rec["external_id"]].slots)
    items = [
        annotate.PlannedRecord(
            f"r/r1/e{i}/t0",
            f"e{i}",
            0,
            ({"role": "user", "content": "q?"},),
            dict(blind["plan"][0].slots),
            blind["plan"][0].original_slot,
        )
        for i in range(40)
    ]
    ranks = [
        next(
            v["rank"]
            for v in annotate.record_body(p, round_n=1, multi_turn=False, slots=K, suggest=True)[
                "suggestions"
            ][0]["value"]
            if v["value"] == p.original_slot
        )
        for p in items
    ]
    assert set(ranks) == {1, 2, 3}


def test_redis_needs_the_password_and_listens_on_no_tcp_port(argilla_stack) -> None:
    sp = server.StackPaths(Path(argilla_stack.home))
    assert stat.S_IMODE(sp.redis_socket.stat().st_mode) == 0o700
    anonymous = redis.Redis(unix_socket_path=str(sp.redis_socket), protocol=2)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.rpush("rq:queue:default", "job")
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    assert redis.Redis.from_url(server.redis_url(sp)).ping()
    pid = int(sp.pid_file("redis").read_text())
    inodes = {
        os.readlink(f"/proc/{pid}/fd/{fd}")
        for fd in os.listdir(f"/proc/{pid}/fd")
        if os.path.islink(f"/proc/{pid}/fd/{fd}")
    }
    sockets = {link[8:-1] for link in inodes if link.startswith("socket:[")}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            assert not (cols[3] == "0A" and cols[9] in sockets), f"redis listens on TCP: {line}"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()


def test_every_file_under_the_home_is_private(argilla_stack) -> None:
    home = Path(argilla_stack.home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for root, dirs, files in os.walk(home):
        for name in files:
            path = Path(root, name)
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        for name in dirs:
            assert stat.S_IMODE(Path(root, name).stat().st_mode) & 0o077 == 0, Path(root, name)


def test_status_does_not_show_the_home_unauthenticated(argilla_stack) -> None:
    r = httpx.get(f"{argilla_stack.api_url}/api/v1/status")
    assert r.status_code == 200
    assert str(argilla_stack.home) not in r.text and "path" not in r.json()["search_engine"]


def test_new_user_passwords_reach_only_a_terminal(tmp_path: Path) -> None:
    from argilla_setup.users import NewUser, describe_new_user

    user = NewUser("ann", "annotator", "ws", tmp_path / "users" / "ann.json", password="s3cret-pw")
    logged = describe_new_user(user, interactive=False)
    assert "s3cret-pw" not in logged and str(user.credentials_file) in logged and "0600" in logged
    assert "s3cret-pw" in describe_new_user(user, interactive=True)
    assert "s3cret-pw" not in repr(user)


def test_the_shuffle_depends_on_the_secret_key_alone_not_on_public_text() -> None:
    """Slot order is seeded by the secret shuffle key (0600 under PICKLOOP_HOME): with another key
    the original lands elsewhere in some records, with the same key always in the same slot. (The
    key was once overwritten by a candidate's text, which labelers can read: the order then followed
    from public data.)"""
    items = [
        annotate.RoundItem(
            f"ex-{i}",
            0,
            ({"role": "user", "content": f"Question {i}?"},),
            f"original answer {i}",
            tuple(annotate.Candidate(f"model answer {i}{c}", MODEL, 0.7) for c in "abc"),
        )
        for i in range(40)
    ]

    def originals(key: str) -> list[str | None]:
        plan = annotate.plan_records(items, run="shuffle", round_n=1, slots=4, seed=0, key=key)
        return [rec.original_slot for rec in plan]

    assert originals("secret-one") == originals("secret-one")
    assert originals("secret-one") != originals("secret-two")
    assert len(set(originals("secret-one"))) == 4, "the original lands in every slot over 40 records"
