"""`pickloop eval` end to end: the tiny model's base and round-1 answer held-out questions, a real
embedded Argilla holds the blind A/B records, simulated judges (a SIMULATION) decide, the driver is
killed while waiting and resumes without duplicates, and no annotator-visible answer names a model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from driver_fixtures import make_config
from ml_fixtures import FAQ, tiny_model, trained_round  # noqa: F401

from argilla_setup.connection import Api, Connection
from argilla_setup.users import credentials_file
from loop.cli import cli
from loop.config import load_config
from loop.data import load_examples
from loop.demo.simulate import SimulatedJudges
from loop.errors import NotFoundError
from loop.paths import RunPaths
from loop.state import RunState

pytestmark = [pytest.mark.argilla, pytest.mark.train]


def _setup(tmp_path: Path, tiny: Path, trained, api_url: str) -> Path:
    """A run whose round 1 is trained (the shared fixture's model), and a question file off the training set."""
    config = make_config(tmp_path, tiny, api_url)
    questions = [
        {"id": f"q{i}", "question": ex.messages[0]["content"], "answer": ex.messages[1]["content"][:80]}
        for i, ex in enumerate(load_examples(FAQ)[40:44])
    ]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    raw = yaml.safe_load(config.read_text())
    raw["eval"] = {"path": str(tmp_path / "eval.jsonl"), "max_new_tokens": 16, "bootstrap": 200}
    raw["wait"]["webhooks"] = False
    config.write_text(yaml.safe_dump(raw))
    cfg = load_config(config)
    run = RunPaths(cfg.run_dir())
    shutil.copytree(trained.model.round_dir, run.round(1).model)
    RunState.load(run.dir).mark_done(1, "train", "test", 0.0)
    return config


def _eval_process(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "loop.cli", "eval", str(config), "--models", "base,round-1", "--name", "t"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_eval_end_to_end_with_kill_resume_and_blind_records(
    argilla_stack,
    tiny_model,
    trained_round,
    tmp_path,
    monkeypatch,
    pickloop_home,  # noqa: F811
) -> None:
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_stack.api_key)
    config = _setup(tmp_path, tiny_model, trained_round, argilla_stack.api_url)
    cfg = load_config(config)
    owner = Api(Connection(argilla_stack.api_url, argilla_stack.api_key))
    runner = CliRunner()

    # Bad input: refused with one line, before anything reaches Argilla.
    for models, message in (
        ("base", "two or more models"),
        ("base,round-2", "round-2 has no trained model (this run has: base, round-1)"),
        ("base,latest", "unknown model 'latest'"),
        ("base,base", "listed twice: base"),
    ):
        result = runner.invoke(cli, ["eval", str(config), "--models", models, "--name", "t"])
        assert result.exit_code != 0 and message in str(result.exception), (models, result.output)
    model_dir = RunPaths(cfg.run_dir()).round(1).model
    model_dir.rename(model_dir.with_name("moved"))
    result = runner.invoke(cli, ["eval", str(config), "--models", "base,round-1", "--name", "t"])
    assert "the model of round-1 is gone" in str(result.exception)
    model_dir.with_name("moved").rename(model_dir)
    with pytest.raises(NotFoundError):
        owner.dataset_by_name(f"{cfg.run.name}-eval-t", cfg.argilla.workspace)

    # First run: answers, push, then killed while waiting for judges.
    proc = _eval_process(config)
    lines = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if "blind A/B records in Argilla dataset" in line:
            time.sleep(0.5)
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(lines)
    assert proc.wait(timeout=60) == -9, "".join(lines)
    paths = RunPaths(cfg.run_dir()).evaluation("t")
    answered_at = {m: paths.answers(m).stat().st_mtime_ns for m in ("base", "round-1")}
    pairs = [json.loads(line) for line in paths.pairs.read_text().splitlines()]
    assert len(pairs) == 4  # 4 questions x 1 pair
    ds = owner.dataset_by_name(f"{cfg.run.name}-eval-t", cfg.argilla.workspace)
    assert owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1})["total"] == 4

    # Annotator blindness: everything a labeler can read of the dataset names no model.
    labeler = cfg.argilla.labelers[0]
    key = json.loads(credentials_file(labeler, pickloop_home / "argilla").read_text())["api_key"]
    with Api(Connection(argilla_stack.api_url, key)) as api:
        seen = [
            api.post(
                f"/api/v1/me/datasets/{ds['id']}/records/search",
                json={"query": {}},
                params=[("include", "responses"), ("include", "suggestions")],
            ),
            api.get(f"/api/v1/datasets/{ds['id']}"),
            api.get(f"/api/v1/datasets/{ds['id']}/fields"),
            api.get(f"/api/v1/datasets/{ds['id']}/questions"),
            api.get(f"/api/v1/me/datasets/{ds['id']}/metadata-properties"),
            api.get("/api/v1/me/datasets"),
        ]
        records = seen[0]["items"]
        assert len(records) == 4  # the labeler does see the records: the check below is not vacuous
        assert all(r["record"]["fields"]["answer_a"] and r["record"]["fields"]["answer_b"] for r in records)
        seen += [api.get(f"/api/v1/records/{item['record']['id']}") for item in records]
    text = json.dumps(seen)
    for telltale in ("round-1", "base", str(tiny_model), "model_a", "model_b"):
        assert telltale not in text, telltale
    positions = {(p["model_a"], p["model_b"]) for p in pairs}
    assert all(set(p) == {"base", "round-1"} for p in positions)

    # Judges (simulated) join; the re-run resumes: no regeneration, no duplicate records.
    refs = {q["id"]: q["answer"] for q in map(json.loads, (tmp_path / "eval.jsonl").read_text().splitlines())}
    judges = SimulatedJudges(
        argilla_stack.api_url,
        pickloop_home / "argilla",
        cfg.argilla.labelers,
        refs,
        run=cfg.run.name,
        workspace=cfg.argilla.workspace,
        interval=0.2,
    )
    # Round 1 was published (local store) before this evaluation: its card will show the result.
    import datasets

    from loop.revisions import LocalStore, RoundStats, publish_round

    published = datasets.Dataset.from_list([{"id": "x", "messages": [{"role": "user", "content": "x"}]}])
    publish_round(
        published,
        RoundStats.from_dataset(published, 1),
        cfg.publish,
        run_name=cfg.run.name,
        run_dir=cfg.run_dir(),
    )
    judges.start()
    try:
        result = runner.invoke(
            cli, ["eval", str(config), "--models", "base,round-1", "--name", "t"], catch_exceptions=False
        )
    finally:
        judges.stop()
    assert result.exit_code == 0, result.output
    assert {m: paths.answers(m).stat().st_mtime_ns for m in ("base", "round-1")} == answered_at
    assert owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1})["total"] == 4
    report = json.loads(paths.report_json.read_text())
    assert report["judgements"] == 4  # min_submitted 1: one verdict per record
    (pair,) = report["pairs"]
    assert pair["wins"] + pair["ties"] + pair["losses"] == 4
    assert {s["model"] for s in report["strengths"]} == {"base", "round-1"}
    assert "round-1: strength" in result.output and "vs base" in result.output
    print(paths.report_md.read_text())
    assert paths.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pairwise results" in paths.report_md.read_text()
    # The verdicts follow the simulated rule: the answer closer to the reference wins.
    from loop.demo.simulate import judge

    answers = {m: json.loads(paths.answers(m).read_text())["answers"] for m in ("base", "round-1")}
    for row in map(json.loads, paths.responses.read_text().splitlines()):
        q = row["question_id"]
        assert row["outcome"] == judge(answers[row["model_a"]][q], answers[row["model_b"]][q], refs[q])

    # The evaluation reached the card of the latest published round, once.
    assert "eval t: added to the card of round-1" in result.output
    card = (LocalStore(cfg.run_dir() / "revisions").folder(1) / "README.md").read_text()
    assert "### Latest evaluation t (" in card and "Evaluated after round 1" in card
    again = runner.invoke(
        cli, ["eval", str(config), "--models", "base,round-1", "--name", "t"], catch_exceptions=False
    )
    assert again.exit_code == 0 and "eval t: already in the card of round-1" in again.output, again.output
    assert (LocalStore(cfg.run_dir() / "revisions").folder(1) / "README.md").read_text() == card


def test_the_eval_phase_evaluates_after_a_listed_round(
    argilla_stack,
    tiny_model,
    trained_round,
    tmp_path,
    monkeypatch,
    pickloop_home,  # noqa: F811
) -> None:
    """`eval.after_rounds: [1]`: round 1's last phase runs `pickloop eval`'s steps as evaluation
    `round-1` (base vs round-1), the simulated judges (a SIMULATION) decide, and the card of the
    revision just published shows the result."""
    import datasets
    from state_fixtures import placeholder_summary

    from loop.driver import Driver
    from loop.phases import PHASE_NAMES
    from loop.revisions import LocalStore, RoundStats, publish_round

    monkeypatch.setenv("ARGILLA_API_KEY", argilla_stack.api_key)
    config = _setup(tmp_path, tiny_model, trained_round, argilla_stack.api_url)
    raw = yaml.safe_load(config.read_text())
    raw["eval"]["after_rounds"] = [1]
    config.write_text(yaml.safe_dump(raw))
    cfg = load_config(config)
    driver = Driver(cfg, progress=False)
    state = driver.state()
    for name in PHASE_NAMES[1:-1]:  # train is done (_setup); the rest of round 1 as if it ran
        state.mark_done(1, name, f"h-{name}", 0.0, placeholder_summary(name))
    ds = datasets.Dataset.from_list([{"id": "x", "messages": [{"role": "user", "content": "x"}]}])
    publish_round(ds, RoundStats.from_dataset(ds, 1), cfg.publish, run_name=cfg.run.name, run_dir=cfg.run_dir())

    refs = {q["id"]: q["answer"] for q in map(json.loads, (tmp_path / "eval.jsonl").read_text().splitlines())}
    judges = SimulatedJudges(
        argilla_stack.api_url,
        pickloop_home / "argilla",
        cfg.argilla.labelers,
        refs,
        run=cfg.run.name,
        workspace=cfg.argilla.workspace,
        interval=0.2,
    )
    judges.start()
    try:
        outcome = driver.run_phase(1, "eval")
    finally:
        judges.stop()
    s = outcome.summary
    assert (s.evaluated, s.name, s.models, s.judgements) == (True, "round-1", ["base", "round-1"], 4)
    assert any(line.startswith("round-1: strength") for line in s.lines)
    report = json.loads(RunPaths(cfg.run_dir()).evaluation("round-1").report_json.read_text())
    assert report["judgements"] == 4 and {x["model"] for x in report["strengths"]} == {"base", "round-1"}
    card = (LocalStore(cfg.run_dir() / "revisions").folder(1) / "README.md").read_text()
    assert "### Latest evaluation round-1 (" in card and "Evaluated after round 1" in card
    assert driver.state().finished_rounds() == [1]
    assert driver.run_phase(1, "eval").skipped, "done once"
