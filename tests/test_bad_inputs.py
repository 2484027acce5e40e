"""Bad inputs through the real CLI (issue #9): one `Error:` line that says what and where, exit code 1,
no traceback, nothing written.

Each case starts from a valid run (the demo config's shape, a two-row data file in the python_faq
format, a model folder with a `config.json`, a remote Argilla URL) and breaks one thing: the config
YAML, the data file, an environment variable or the file system. It runs `python -m loop.cli` in a
subprocess, the way a user does, and fails either `pickloop config check` or `pickloop run` in its
preflight, before any training or server start (each case takes well under a second).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD_ROWS = [
    {"id": "faq-1", "question": "Why does Python use indentation?", "answer": "For readability."},
    {"id": "faq-2", "question": "Is Python compiled?", "answer": "To bytecode, then interpreted."},
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLOSED = f"http://127.0.0.1:{_closed_port()}"

# The config's lines are fixed so the cases can name them (`run.yaml:N`).
BASE = {
    "run": {"name": "bad", "dir": "runs/bad", "seed": 0, "max_rounds": 1},
    "data": {"path": "data.jsonl"},
    "model": {"name_or_path": "./model"},
    "train": {"sft": {"learning_rate": 0.001, "max_length": 128}, "lora": {"r": 8}},
    "generate": {"k": 4, "temperatures": [0.7, 1.0], "top_p": 0.95, "max_new_tokens": 32},
    "argilla": {"api_url": CLOSED, "labelers": ["alice", "bob"], "min_submitted": 1},
    "wait": {"poll_interval_s": 1},
    "publish": {"private": True},
}


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@dataclass
class Case:
    id: str
    expect: tuple[str, ...]  # substrings of the one `Error:` line
    command: str = "check"  # "check": pickloop config check; "run": pickloop run
    set: dict = field(default_factory=dict)  # dotted key -> value (None deletes the key)
    yaml: str | bytes | None = None  # the whole config file instead of BASE
    data: bytes | None = None  # data.jsonl contents (default: GOOD_ROWS)
    env: dict = field(default_factory=dict)  # None unsets
    setup: Callable[[Path], None] | None = None  # extra file-system state, in the work folder
    models: str = "base,round-1"  # `pickloop eval --models` (command "eval")


def _row(**kw) -> bytes:
    return _jsonl([GOOD_ROWS[0], kw])


def _messages(*pairs: tuple[str, str]) -> bytes:
    return _jsonl([{"id": "m", "messages": [{"role": r, "content": c} for r, c in pairs]}])


def _model_without_config(work: Path) -> None:
    (work / "model" / "config.json").unlink()


def _model_is_a_file(work: Path) -> None:
    shutil.rmtree(work / "model")
    (work / "model").write_text("weights?")


def _data_folder(work: Path) -> None:
    (work / "data.jsonl").unlink()
    (work / "data").mkdir()
    (work / "data" / "README.md").write_text("the data is elsewhere\n")


def _data_folder_with_a_bad_file(work: Path) -> None:
    (work / "data.jsonl").unlink()
    (work / "data").mkdir()
    (work / "data" / "train.jsonl").write_text("question: why?\n")


def _run_dir_under_a_file(work: Path) -> None:
    (work / "runs").write_text("not a folder\n")


def _round_one_trained(work: Path, *, model: bool = True) -> None:
    """runs/bad with round 1's train phase done (state.json), and its model folder unless `model` is false."""
    from loop.state import MIGRATIONS

    run = work / "runs" / "bad"
    record = {"status": "done", "inputs_hash": "x", "finished_at": "2026-01-01T00:00:00+00:00"}
    state = {"version": 2, "migrations": [n for n, _ in MIGRATIONS], "rounds": {"1": {"train": record}}}
    run.mkdir(parents=True)
    (run / "state.json").write_text(json.dumps(state))
    if model:
        (run / "round-1" / "model" / "adapter").mkdir(parents=True)
        (run / "round-1" / "model" / "train_config.json").write_text("{}\n")


def _questions(*rows: dict) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        _round_one_trained(work)
        (work / "q.jsonl").write_bytes(_jsonl(list(rows)))

    return setup


EVAL_Q = {"id": "e1", "question": "What is a decorator?", "answer": "A function that wraps another."}


CASES = [
    # --- pickloop eval: refused before any answer is generated or anything is pushed ----------------
    Case(
        "eval-no-questions",
        ("run.yaml", "key 'eval'", "no evaluation questions"),
        "eval",
        setup=_round_one_trained,
    ),
    Case(
        "eval-one-model",
        ("two or more models", "--models base,round-1"),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=_questions(EVAL_Q),
        models="base",
    ),
    Case(
        "eval-model-twice",
        ("listed twice: round-1",),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=_questions(EVAL_Q),
        models="round-1,base,round-1",
    ),
    Case(
        "eval-unknown-model",
        ("unknown model 'best'", "this run has: base, round-1"),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=_questions(EVAL_Q),
        models="base,best",
    ),
    Case(
        "eval-round-not-trained",
        ("round-2 has no trained model", "this run has: base, round-1"),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=_questions(EVAL_Q),
        models="base,round-2",
    ),
    Case(
        "eval-round-model-gone",
        ("the model of round-1 is gone", "pickloop round redo train"),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=lambda w: _round_one_trained(w, model=False),
    ),
    Case(
        "eval-overlaps-training",
        ("q.jsonl", "1 evaluation question(s) also in the training data", "'faq-2'"),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=_questions(EVAL_Q, {"id": "x", "question": "is python  COMPILED?"}),
    ),
    Case(
        "eval-empty-questions", ("q.jsonl", "no rows"), "eval", {"eval.path": "q.jsonl"}, setup=_questions()
    ),
    Case(
        "eval-bad-question-row",
        ("q.jsonl:2", "field 'messages[0].role'"),
        "eval",
        {"eval.path": "q.jsonl"},
        setup=_questions(EVAL_Q, {"messages": [{"role": "bot", "content": "hi"}]}),
    ),
    Case(
        "eval-holdout-before-round-1",
        ("run round 1 first",),
        "eval",
        {"eval.holdout_fraction": 0.2},
        setup=_round_one_trained,
    ),
    Case(
        "eval-two-sources",
        ("run.yaml:", "eval.holdout_fraction", "not both"),
        set={"eval.path": "q.jsonl", "eval.holdout_fraction": 0.2},
    ),
    Case(
        "eval-holdout-out-of-range",
        ("eval.holdout_fraction", "less than 1"),
        set={"eval.holdout_fraction": 1.5},
    ),
    # --- the YAML itself -------------------------------------------------------------------------
    Case("yaml-syntax", ("run.yaml:4", "not valid YAML"), yaml="run:\n  name: bad\n  seed: [0\ndata: {}\n"),
    Case("yaml-tab-indent", ("run.yaml:2", "not valid YAML"), yaml="run:\n\tname: bad\n"),
    Case("yaml-empty", ("run.yaml", "the config is empty"), yaml="# nothing\n"),
    Case("yaml-top-level-list", ("run.yaml:1", "top level must be a mapping"), yaml="- run\n- data\n"),
    Case(
        "yaml-duplicate-key",
        ("run.yaml:3", "key 'run.name'", "duplicate key"),
        yaml="run:\n  name: a\n  name: b\n",
    ),
    Case("config-not-utf8", ("run.yaml", "cannot read the config"), yaml=b"run:\n  name: b\xe9\xff\n"),
    Case(
        "config-missing",
        ("nope.yaml", "no such file"),
        setup=lambda w: (w / "run.yaml").rename(w / "other.yaml"),
    ),
    # --- keys and types ------------------------------------------------------------------------
    Case(
        "unknown-key",
        ("key 'generate.temperture'", "did you mean 'temperatures'"),
        set={"generate.temperture": 1},
    ),
    Case("unknown-section", ("key 'modle'", "did you mean 'model'"), set={"modle": {"x": 1}}),
    Case("missing-section", ("key 'model'", "required section is missing"), set={"model": None}),
    Case("missing-key", ("key 'run.name'", "required key is missing"), set={"run.name": None}),
    Case("wrong-type-k", ("run.yaml:17", "key 'generate.k'", "valid integer"), set={"generate.k": "four"}),
    Case("section-not-mapping", ("key 'wait'", "expected a mapping"), set={"wait": 5}),
    Case("bad-run-name", ("key 'run.name'", "run names use letters"), set={"run.name": "my run!"}),
    Case(
        "unknown-sft-field",
        ("key 'train.sft.learnin_rate'", "did you mean 'learning_rate'"),
        set={"train.sft.learnin_rate": 0.1},
    ),
    Case(
        "sft-wrong-type",
        ("key 'train.sft.learning_rate'", "expects"),
        set={"train.sft.learning_rate": "fast"},
    ),
    Case(
        "secret-in-config", ("key 'argilla.api_key'", "secrets do not belong"), set={"argilla.api_key": "abc"}
    ),
    # --- numbers out of range and bad choices ---------------------------------------------------
    Case("select-budget-zero", ("key 'select.budget'", "at least 1, got 0"), set={"select.budget": 0}),
    Case("select-budget-negative", ("key 'select.budget'", "at least 1, got -5"), set={"select.budget": -5}),
    Case(
        "select-budget-fraction-above-1",
        ("key 'select.budget'", "must be in (0, 1], got 1.5"),
        set={"select.budget": 1.5},
    ),
    Case(
        "select-budget-bool",
        ("key 'select.budget'", "fraction (0 < f <= 1) or a count"),
        set={"select.budget": True},
    ),
    Case(
        "select-unknown-strategy",
        ("key 'select.strategy'", "'value', 'ifd_hard' or 'disagreement'"),
        set={"select.strategy": "hardest"},
    ),
    Case(
        "replay-unknown-mode",
        ("key 'train.replay.mode'", "'even' or 'random'"),
        set={"train.replay": {"mode": "hardest", "k": 2}},
    ),
    Case(
        "replay-negative-k",
        ("key 'train.replay.k'", "greater than or equal to 1"),
        set={"train.replay": {"mode": "hard", "k": -3}},
    ),
    Case(
        "replay-fraction-above-one",
        ("key 'train.replay.fraction'", "less than or equal to 1"),
        set={"train.replay": {"mode": "easy", "fraction": 1.5}},
    ),
    Case(
        "replay-mode-without-a-count",
        ("key 'train.replay.mode'", "needs k (a count) or fraction"),
        set={"train.replay": {"mode": "even"}},
    ),
    Case(
        "replay-scorer-folder-missing",
        ("key 'train.replay.scorer'", "no model folder with a config.json"),
        command="run",
        set={"train.replay": {"mode": "hard", "k": 2, "scorer": "./scorer"}},
    ),
    Case(
        "aggregate-on-conflict-unknown",
        ("key 'aggregate.on_conflict'", "'keep_current', 'best' or 'review'"),
        set={"aggregate.on_conflict": "vote"},
    ),
    Case(
        "aggregate-conflict-below-out-of-range",
        ("key 'aggregate.conflict_below'", "less than or equal to 1"),
        set={"aggregate.conflict_below": 1.5},
    ),
    Case(
        "select-weight-unknown-score",
        ("key 'select.weights.ifd'", "unknown score"),
        set={"select.weights": {"ifd": 1.0}},
    ),
    Case(
        "select-weight-base-without-base-ifd",
        ("key 'select.weights.ifd_base'", "select.base_ifd: true"),
        set={"select.weights": {"ifd_base": 1.0}},
    ),
    Case(
        "seed-negative", ("run.yaml:4", "key 'run.seed'", "greater than or equal to 0"), set={"run.seed": -3}
    ),
    Case(
        "max-rounds-zero", ("key 'run.max_rounds'", "greater than or equal to 1"), set={"run.max_rounds": 0}
    ),
    Case("k-zero", ("key 'generate.k'", "greater than or equal to 2"), set={"generate.k": 0}),
    Case("k-too-big", ("key 'generate.k'", "less than or equal to 50"), set={"generate.k": 51}),
    Case(
        "temperature-negative",
        ("key 'generate.temperatures[1]'", "greater than 0"),
        set={"generate.temperatures": [0.7, -1.0]},
    ),
    Case(
        "temperatures-empty",
        ("key 'generate.temperatures'", "at least 1 item"),
        set={"generate.temperatures": []},
    ),
    Case("top-p-above-1", ("key 'generate.top_p'", "less than or equal to 1"), set={"generate.top_p": 1.5}),
    Case("top-p-zero", ("key 'generate.top_p'", "greater than 0"), set={"generate.top_p": 0}),
    Case(
        "max-new-tokens-zero",
        ("key 'generate.max_new_tokens'", "must be auto or a whole number >= 1, got 0"),
        set={"generate.max_new_tokens": 0},
    ),
    Case(
        "max-new-tokens-word",
        ("key 'generate.max_new_tokens'", "must be auto or a whole number >= 1, got 'lots'"),
        set={"generate.max_new_tokens": "lots"},
    ),
    Case(
        "seeds-negative",
        ("key 'generate.seeds[0]'", "greater than or equal to 0"),
        set={"generate.seeds": [-1]},
    ),
    Case(
        "min-submitted-zero",
        ("key 'argilla.min_submitted'", "greater than or equal to 1"),
        set={"argilla.min_submitted": 0},
    ),
    Case(
        "min-submitted-above-labelers",
        ("key 'argilla.min_submitted'", "only 2 labelers"),
        set={"argilla.min_submitted": 3},
    ),
    Case(
        "labelers-duplicate",
        ("key 'argilla.labelers'", "listed twice: alice"),
        set={"argilla.labelers": ["alice", "alice"]},
    ),
    Case(
        "reviewers-duplicate",
        ("key 'review.reviewers'", "listed twice: carol"),
        set={"review.reviewers": ["carol", "carol"]},
    ),
    Case(
        "reviewer-name-invalid",
        ("key 'review.reviewers'", "reviewer name 'a b'"),
        set={"review.reviewers": ["a b"]},
    ),
    Case(
        "learning-rate-negative",
        ("key 'train.sft.learning_rate'", "greater than 0"),
        set={"train.sft.learning_rate": -0.001},
    ),
    Case("lora-r-zero", ("key 'train.lora.r'", "greater than 0"), set={"train.lora.r": 0}),
    Case(
        "completed-fraction-above-1",
        ("key 'wait.min_completed_fraction'", "less than or equal to 1"),
        set={"wait.min_completed_fraction": 1.5},
    ),
    Case(
        "poll-interval-negative",
        ("key 'wait.poll_interval_s'", "greater than 0"),
        set={"wait.poll_interval_s": -1},
    ),
    Case(
        "enum-strategy",
        ("key 'train.strategy'", "'continue', 'merge_and_stack' or 'from_base'"),
        set={"train.strategy": "restart"},
    ),
    Case("enum-dtype", ("key 'model.dtype'", "'bfloat16'"), set={"model.dtype": "fp8"}),
    Case("enum-backend", ("key 'generate.backend'", "'vllm'"), set={"generate.backend": "tensorrt"}),
    Case("enum-on-timeout", ("key 'wait.on_timeout'", "'proceed'"), set={"wait.on_timeout": "ignore"}),
    # --- URLs, repo ids, paths -------------------------------------------------------------------
    Case(
        "api-url-ftp",
        ("key 'argilla.api_url'", "http:// or https://"),
        set={"argilla.api_url": "ftp://argilla.example.com"},
    ),
    Case("api-url-no-host", ("key 'argilla.api_url'", "no host"), set={"argilla.api_url": "http://"}),
    Case(
        "webhook-url-ftp",
        ("key 'wait.webhook_url'", "should match pattern"),
        set={"wait.webhook_url": "ftp://me:1"},
    ),
    Case(
        "hub-repo-invalid",
        ("key 'publish.hub_repo'", "not a Hub repo id"),
        set={"publish.hub_repo": "not a repo!!/x/y"},
    ),
    Case(
        "hub-repo-double-dash",
        ("key 'publish.hub_repo'", "not a Hub repo id"),
        set={"publish.hub_repo": "me/a--b"},
    ),
    Case(
        "model-not-a-repo-id",
        ("key 'model.name_or_path'", "not a Hub repo id"),
        set={"model.name_or_path": "my model!!"},
    ),
    Case(
        "env-var-unset",
        ("run.yaml:7", "key 'data.path'", "$PICKLOOP_TEST_UNSET is not set"),
        set={"data.path": "${PICKLOOP_TEST_UNSET}/data.jsonl"},
    ),
    Case(
        "env-var-empty",
        ("key 'model.name_or_path'", "$PICKLOOP_TEST_EMPTY is not set"),
        set={"model.name_or_path": "$PICKLOOP_TEST_EMPTY/m"},
        env={"PICKLOOP_TEST_EMPTY": ""},
    ),
    # --- `pickloop run`: the model ------------------------------------------------------------------
    Case(
        "model-missing",
        ("run.yaml:9", "key 'model.name_or_path'", "no such model folder"),
        "run",
        set={"model.name_or_path": "./models/none"},
    ),
    Case("model-is-a-file", ("key 'model.name_or_path'", "a file"), "run", setup=_model_is_a_file),
    Case(
        "model-without-config",
        ("key 'model.name_or_path'", "has no config.json"),
        "run",
        setup=_model_without_config,
    ),
    Case(
        "model-hub-id-offline",
        ("key 'model.name_or_path'", "cannot load model 'nobody/no-such-model'"),
        "run",
        set={"model.name_or_path": "nobody/no-such-model"},
        env={"HF_HUB_OFFLINE": "1"},
    ),
    # --- `pickloop run`: the data ---------------------------------------------------------------
    Case(
        "data-missing", ("data.jsonl", "file not found"), "run", setup=lambda w: (w / "data.jsonl").unlink()
    ),
    Case("data-empty", ("data.jsonl", "no rows"), "run", data=b""),
    Case(
        "data-not-json",
        ("data.jsonl:2", "not valid JSON"),
        "run",
        data=_jsonl(GOOD_ROWS[:1]) + b"question: why?\n",
    ),
    Case(
        "data-json-array",
        ("data.jsonl:1", "must be a JSON object, got list"),
        "run",
        data=json.dumps(GOOD_ROWS).encode() + b"\n",
    ),
    Case(
        "data-missing-answer",
        ("data.jsonl:2", "field 'answer'", "missing 'answer'"),
        "run",
        data=_row(id="x", question="Q?"),
    ),
    Case(
        "data-empty-answer",
        ("data.jsonl:2", "field 'answer'", "is empty"),
        "run",
        data=_row(id="x", question="Q?", answer="  "),
    ),
    Case(
        "data-wrong-type",
        ("data.jsonl:2", "field 'question'", "must be a string"),
        "run",
        data=_row(id="x", question=3, answer="a"),
    ),
    Case(
        "data-duplicate-id",
        ("data.jsonl:2", "field 'id'", "first seen at line 1"),
        "run",
        data=_row(id="faq-1", question="Q?", answer="A."),
    ),
    Case(
        "data-not-utf8",
        ("data.jsonl:2", "not UTF-8"),
        "run",
        data=_jsonl(GOOD_ROWS[:1]) + b'{"question": "caf\xe9?", "answer": "a"}\n',
    ),
    Case(
        "data-binary",
        ("data.jsonl:3", "binary data"),
        "run",
        data=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\n",
    ),
    Case(
        "data-folder-without-files",
        ("data", "holds no dataset"),
        "run",
        set={"data.path": "./data"},
        setup=_data_folder,
    ),
    Case(
        "data-folder-bad-file",
        ("data", "cannot load dataset (DatasetGenerationError)"),
        "run",
        set={"data.path": "./data"},
        setup=_data_folder_with_a_bad_file,
    ),
    Case(
        "data-roles-out-of-order",
        ("data.jsonl:1", "field 'messages[0].role'", "must follow a 'user'"),
        "run",
        data=_messages(("assistant", "hi"), ("user", "q?")),
    ),
    Case(
        "data-ends-with-user",
        ("data.jsonl:1", "messages[1].role", "must end with an 'assistant'"),
        "run",
        data=_messages(("system", "Be brief."), ("user", "q?")),
    ),
    Case(
        "data-unknown-role",
        ("data.jsonl:1", "messages[0].role", "unknown role 'human'"),
        "run",
        data=_messages(("human", "q?"), ("assistant", "a")),
    ),
    # --- `pickloop run`: file system, Hub, Argilla -------------------------------------------------
    Case("run-dir-under-a-file", ("run directory", "is not a folder"), "run", setup=_run_dir_under_a_file),
    Case(
        "hub-token-missing",
        ("key 'publish.hub_repo'", "needs a token"),
        "run",
        set={"publish.hub_repo": "me/ds"},
        env={"HF_TOKEN": None},
    ),
    Case(
        "hf-endpoint-not-a-url",
        ("HF_ENDPOINT", "http:// or https://"),
        "run",
        set={"publish.hub_repo": "me/ds"},
        env={"HF_ENDPOINT": "hub.internal"},
    ),
    # An empty HF_ENDPOINT is treated as unset: the run gets past the Hub checks to Argilla's.
    Case(
        "hf-endpoint-empty",
        ("cannot reach Argilla",),
        "run",
        set={"publish.hub_repo": "me/ds"},
        env={"HF_ENDPOINT": ""},
    ),
    Case("argilla-unreachable", ("cannot reach Argilla at http://127.0.0.1:", "argilla.api_url"), "run"),
    Case(
        "argilla-unknown-host",
        ("cannot reach Argilla at http://argilla.invalid",),
        "run",
        set={"argilla.api_url": "http://argilla.invalid"},
    ),
    Case(
        "argilla-key-missing",
        ("key 'argilla.api_url'", "ARGILLA_API_KEY"),
        "run",
        env={"ARGILLA_API_KEY": None},
    ),
    Case(
        "argilla-key-file-missing",
        ("key 'argilla.api_key_file'", "does not exist"),
        "run",
        set={"argilla.api_key_file": "key.txt"},
        env={"ARGILLA_API_KEY": None},
    ),
    Case(
        "argilla-not-argilla",
        ("answered 404", "not an Argilla"),
        "run",
        set={"argilla.api_url": "NOT_ARGILLA"},
    ),
    Case(
        "argilla-embedded-not-started",
        ("no Argilla API URL", "pickloop argilla up"),
        "run",
        set={"argilla.api_url": None},
        env={"ARGILLA_API_KEY": None},
    ),
]


@pytest.fixture(scope="module")
def not_argilla():
    """A plain HTTP server that is not Argilla (every path 404), as when api_url names the wrong port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _set(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def _config_text(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


def make_work(work: Path, case: Case, not_argilla_url: str | None = None) -> Path:
    """The valid run of every case, broken the way `case` says; returns the config path."""
    work.mkdir(parents=True)
    (work / "model").mkdir()
    (work / "model" / "config.json").write_text('{"model_type": "qwen2"}\n')
    (work / "data.jsonl").write_bytes(_jsonl(GOOD_ROWS) if case.data is None else case.data)
    config = json.loads(json.dumps(BASE))
    for key, value in case.set.items():
        _set(config, key, not_argilla_url if value == "NOT_ARGILLA" else value)
    text = case.yaml if case.yaml is not None else _config_text(config)
    path = work / "run.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if case.setup is not None:
        case.setup(work)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


def cli_env(tmp: Path, extra: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ARGILLA_", "PICKLOOP_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PICKLOOP_HOME=str(tmp / "home"),
        HF_HOME=str(tmp / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
        ARGILLA_API_KEY="argilla.apikey-for-tests",
        HF_TOKEN="hf_" + "x" * 34,
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, user: tuple[int, int] | None = None):
    command = [sys.executable, "-m", "loop.cli", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *command]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def assert_one_clean_error(proc, expect: tuple[str, ...]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for part in expect:
        assert part in errors[0], f"{part!r} not in {errors[0]!r}"
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clean_error(case: Case, tmp_path: Path, not_argilla: str) -> None:
    work = tmp_path / "work"
    config = make_work(work, case, not_argilla)
    before = snapshot(work)
    args = ["config", "check", "nope.yaml" if case.id == "config-missing" else config.name]
    if case.command == "run":
        args = ["run", config.name]
    if case.command == "eval":
        args = ["eval", config.name, "--models", case.models]
    proc = run_cli(args, cli_env(tmp_path, case.env), work)
    assert_one_clean_error(proc, case.expect)
    assert snapshot(work) == before, "the failed command wrote into the work folder"
    assert not (tmp_path / "home" / "runs").exists()


def test_enough_cases() -> None:
    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)


def test_the_base_run_passes_every_local_check(tmp_path: Path) -> None:
    """The cases' base is valid: `config check` passes, and `run` gets to the Argilla check."""
    config = make_work(tmp_path / "work", Case("base", ()))
    env = cli_env(tmp_path, {})
    proc = run_cli(["config", "check", config.name], env, config.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli(["run", config.name], env, config.parent)
    assert_one_clean_error(proc, ("cannot reach Argilla",))


def test_unreachable_argilla_is_not_retried_for_long(tmp_path: Path) -> None:
    import time

    config = make_work(tmp_path / "work", Case("base", ()))
    started = time.monotonic()
    proc = run_cli(["run", config.name], cli_env(tmp_path, {}), config.parent)
    assert_one_clean_error(proc, ("cannot reach Argilla",))
    assert proc.stderr.count("retry 1/") <= 1 and time.monotonic() - started < 15


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    config = make_work(tmp_path / "work", Case("seed", (), set={"run.seed": -3}))
    proc = run_cli(["--debug", "config", "check", config.name], cli_env(tmp_path, {}), config.parent)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_read_only_run_dir(tmp_path: Path) -> None:
    """A run directory the user cannot write: one line saying so (as root, run as `nobody`: root
    writes anywhere)."""
    user = None
    base = tmp_path
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        user = (65534, 65534)
        base = Path(tempfile.mkdtemp(prefix="pickloop-ro-"))
        os.chmod(base, 0o755)
    try:
        config = make_work(base / "work", Case("base", ()))
        (base / "work" / "runs").mkdir(mode=0o555)
        os.chmod(base / "work" / "runs", 0o555)
        before = snapshot(base / "work")
        env = cli_env(base, {})
        proc = run_cli(["run", config.name], env, config.parent, user=user)
        assert_one_clean_error(proc, ("run directory", "runs/bad", "not writable"))
        assert snapshot(base / "work") == before
    finally:
        if base is not tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def test_disk_full_is_one_line() -> None:
    """ENOSPC as an OSError, and as safetensors/torch word it, is described (a re-run resumes)."""
    import errno

    from safetensors import SafetensorError

    from loop.errors import describe_error

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/model.safetensors")
    assert describe_error(full) == "No space left on device: /runs/x/model.safetensors"
    rust = SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    )
    assert "No space left on device" in describe_error(rust)
    torch_error = RuntimeError(
        "[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: No space left on device"
    )
    assert "re-run" in describe_error(torch_error)


def test_unhealable_transport_errors_are_not_retried() -> None:
    import httpx

    from loop.retry import is_retryable

    for url in ("ftp://127.0.0.1/", "http://argilla.invalid/"):
        with pytest.raises(httpx.HTTPError) as info:
            httpx.get(url, timeout=5)
        assert not is_retryable(info.value), url
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(CLOSED, timeout=5)
    assert is_retryable(info.value)  # a server may be starting: worth one more try


def test_refusals_are_not_retried_and_bare_transport_errors_are_described() -> None:
    import httpx

    from loop.errors import AuthError, NotFoundError, describe_error
    from loop.retry import is_retryable

    assert not is_retryable(AuthError("GET /api/v1/me: HTTP 401, bad or missing API key"))
    assert not is_retryable(NotFoundError("GET /api/v1/me: HTTP 404"))
    # An httpx error without a request attached (httpx raises RuntimeError on `.request`) is still one line.
    assert describe_error(httpx.ConnectError("[Errno 111] Connection refused")).startswith(
        "cannot reach the server"
    )


def test_wrong_argilla_key_is_one_line_without_retries(argilla_stack, tmp_path: Path) -> None:
    """A real Argilla server refusing the key (401): one line, no retry, before anything is written."""
    case = Case("wrong-key", (), set={"argilla.api_url": argilla_stack.api_url})
    config = make_work(tmp_path / "work", case)
    before = snapshot(tmp_path / "work")
    env = cli_env(tmp_path, {"ARGILLA_API_KEY": "argilla.not-the-key"})
    proc = run_cli(["run", config.name], env, config.parent)
    assert_one_clean_error(proc, (f"Argilla at {argilla_stack.api_url} refused the API key", "HTTP 401"))
    assert "retry" not in proc.stderr and "argilla.not-the-key" not in proc.stderr
    assert snapshot(tmp_path / "work") == before
