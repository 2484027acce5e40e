"""`pickloop status`: nothing run yet, a round mid-way, finished rounds; state built with `RunState`.

Live progress from a running Argilla server is checked in tests/test_remote_argilla.py; here the
server is either not asked (`--offline`) or not there.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from loop.cli import cli
from loop.config import load_config
from loop.driver import Driver
from loop.phases import PHASE_NAMES
from loop.state import RunState
from loop.status import RoundStatus, run_status

SUMMARIES = {
    "train": {"examples": 6, "first_loss": 4.2, "final_loss": 1.1},
    "regenerate": {"skipped": "data.regenerate is not set"},
    "generate": {"turns": 6, "candidates": 18, "same_as_current": 1},
    "score": {"turns": 8, "verified_unchanged": 1},
    "push": {
        "dataset": "st-round-1",
        "dataset_id": "5f0c-ds",
        "records": 6,
        "url": "http://x/dataset/5f0c-ds",
        "strategy": "value",
        "selected": 6,
        "not_selected": 1,
        "verified_unchanged": 1,
    },
    "wait": {
        "reason": "completed",
        "completed": 5,
        "total": 6,
        "settled": 1,
        "polls": 3,
        "labelers": {"bob": 6, "alice": 5},
    },
    "pull": {"records": 6, "responses": 12, "submitted": 11, "discarded": 1},
    "aggregate": {"records": 6, "completed": 6, "changed": 2, "choices": {"original": 4, "model": 2}},
    "review": {"reason": "not_review"},
    "publish": {"revision": "round-1", "commit": "c0ffee", "backend": "local"},
    "eval": {"skipped": "eval.every_round and eval.after_rounds are not set"},
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pickloop.yaml"
    cfg = {
        "run": {"name": "st", "dir": str(tmp_path / "run")},
        "data": {"path": "data.jsonl"},
        "model": {"name_or_path": "m"},
        # Nothing listens there: live progress must fail softly.
        "argilla": {"api_url": f"http://127.0.0.1:{closed_port()}"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def done(config: Path, round_n: int, phases: tuple[str, ...], **summaries: dict) -> None:
    state = RunState.load(load_config(config).run_dir())
    for phase in phases:
        state.mark_done(round_n, phase, f"h-{round_n}-{phase}", 1.0, summaries.get(phase, SUMMARIES[phase]))


def status(config: Path, *args: str) -> tuple[str, list[list[str]]]:
    """The command's output and its table's body rows, as cells."""
    result = CliRunner().invoke(cli, ["status", *args, str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in result.output.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    ]
    return result.output, rows


def test_nothing_run_yet(config: Path, tmp_path: Path) -> None:
    assert run_status(Driver(load_config(config), progress=False)) == []
    out, rows = status(config)
    assert out == f"pickloop run st: nothing has run yet ({tmp_path / 'run'}).\n"
    assert rows == []


def test_a_redo_of_everything_is_nothing_run_again(config: Path) -> None:
    done(config, 1, ("train",))
    driver = Driver(load_config(config), progress=False)
    assert driver.redo(1, "train") == [(1, "train")]
    assert run_status(driver) == []
    assert "nothing has run yet" in status(config)[0]


def test_mid_round_before_labeling_shows_the_next_phase(config: Path) -> None:
    done(config, 1, ("train", "regenerate", "generate", "score"))
    assert run_status(Driver(load_config(config), progress=False), live=False) == [
        RoundStatus(1, "push", None, (), None)
    ]
    out, rows = status(config, "--offline")
    assert "pickloop run st" in out
    assert rows == [["1", "push", "-", "-", "-", "-"]]


def test_in_labeling_without_a_server_shows_what_the_run_dir_knows(
    config: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARGILLA_API_KEY", "status-test-key")
    done(config, 1, ("train", "regenerate", "generate", "score", "push"))
    assert status(config, "--offline")[1] == [["1", "wait", "6 asked, 2 auto-kept (1 verified)", "6 records pushed", "-", "-"]]
    caplog.set_level(logging.WARNING)
    out, rows = status(config)  # live: the server is down, the pushed record count still shows
    assert rows == [["1", "wait", "6 asked, 2 auto-kept (1 verified)", "6 records pushed", "-", "-"]]
    # One line says why, no retry warnings before it.
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith("no live progress from Argilla: ")
    assert "status-test-key" not in out + warning


def test_after_the_wait_progress_comes_from_its_summary(config: Path) -> None:
    done(config, 1, ("train", "regenerate", "generate", "score", "push", "wait"))
    (row,) = run_status(Driver(load_config(config), progress=False), live=True)  # no server asked
    # 5 completed plus 1 settled (answered by every labeler, one of them discarded) of 6: the wait
    # is over, so nothing is pending.
    assert row == RoundStatus(
        1, "pull", "5/6 records complete · 1 discarded", (("alice", 5), ("bob", 6)), None, (6, 1, 1)
    )
    assert status(config, "--offline")[1] == [
        ["1", "pull", "6 asked, 2 auto-kept (1 verified)", "5/6 records complete · 1 discarded", "alice 5 · bob 6", "-"]
    ]


def test_a_wait_that_proceeded_at_a_fraction_shows_the_pending_records(config: Path) -> None:
    wait = {"reason": "fraction", "completed": 4, "total": 6, "settled": 0, "labelers": {"alice": 4}}
    done(config, 1, ("train", "regenerate", "generate", "score", "push", "wait"), wait=wait)
    assert status(config, "--offline")[1] == [
        ["1", "pull", "6 asked, 2 auto-kept (1 verified)", "4/6 records complete · 2 left unlabeled", "alice 4", "-"]
    ]


def test_a_finished_round_and_the_next_one(config: Path) -> None:
    done(config, 1, PHASE_NAMES)
    out, rows = status(config)  # live, but a finished round never asks the server
    assert rows == [
        ["1", "done", "6 asked, 2 auto-kept (1 verified)", "5/6 records complete · 1 discarded", "alice 5 · bob 6", "round-1"],
        ["2", "train", "-", "-", "-", "-"],
    ]
    assert "pending" not in out
    assert out.splitlines()[0].strip().startswith("pickloop run st (")
    header = next(line for line in out.splitlines() if "next phase" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "round",
        "next phase",
        "selection",
        "labeling",
        "labelers (submitted)",
        "revision",
    ]


def test_two_finished_rounds_and_a_third_mid_way(config: Path) -> None:
    done(config, 1, PHASE_NAMES)
    second = {
        "wait": {**SUMMARIES["wait"], "completed": 6, "settled": 0, "labelers": {"alice": 6, "bob": 6}},
        "publish": {
            **SUMMARIES["publish"],
            "revision": "round-2",
            "preferences": {"preferences": 7, "preferences_kto": 9},
        },
    }
    done(config, 2, PHASE_NAMES, **second)
    done(config, 3, ("train", "regenerate"))
    assert status(config, "--offline")[1] == [
        ["1", "done", "6 asked, 2 auto-kept (1 verified)", "5/6 records complete · 1 discarded", "alice 5 · bob 6", "round-1"],
        [
            "2",
            "done",
            "6 asked, 2 auto-kept (1 verified)",
            "6/6 records complete",
            "alice 6 · bob 6",
            "round-2 · 7 pairs",  # preference pairs; a revision published before them shows none
        ],
        ["3", "generate", "-", "-", "-", "-"],
    ]


def test_a_round_with_conflicts_counts_them_after_the_labeling(config: Path) -> None:
    done(config, 1, PHASE_NAMES, aggregate={**SUMMARIES["aggregate"], "conflicts": 2})
    (row,) = run_status(Driver(load_config(config), progress=False), live=False)[:1]
    assert row.conflicts == 2
    assert row.labeling_text() == "5/6 records complete · 1 discarded · 2 conflicts"  # the labeling column


def test_run_name_shows_another_run_of_the_same_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated demo runs as `<name>-simulated`; status of the plain name points there."""
    monkeypatch.setenv("PICKLOOP_HOME", str(tmp_path / "home"))
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({"run": {"name": "dm"}, "data": {"path": "d.jsonl"}, "model": {"name_or_path": "m"}}))
    cfg = load_config(path)
    cfg.run.name = "dm-simulated"
    state = RunState.load(cfg.run_dir())
    state.mark_done(1, "train", "h", 1.0, SUMMARIES["train"])

    out, rows = status(path, "--offline")
    assert "nothing has run yet" in out
    assert f"pickloop status {path} --run-name dm-simulated" in out
    out, rows = status(path, "--offline", "--run-name", "dm-simulated")
    assert "pickloop run dm-simulated" in out
    assert rows == [["1", "regenerate", "-", "-", "-", "-"]]

    bad = CliRunner().invoke(cli, ["status", "--run-name", "../x", str(path)])
    assert bad.exit_code == 2 and "--run-name" in bad.output


def test_a_round_with_a_review_counts_what_the_review_decided(config: Path) -> None:
    review = {"conflicts": 3, "queued": 3, "reviewed": 2, "changed": 1, "rewritten": True, "reason": "fraction"}
    done(config, 1, PHASE_NAMES, aggregate={**SUMMARIES["aggregate"], "conflicts": 3}, review=review)
    (row,) = run_status(Driver(load_config(config), progress=False), live=False)[:1]
    assert row.review == (3, 2, 1)
    assert row.labeling_text() == (
        "5/6 records complete · 1 discarded · 3 conflicts · 2/3 decided by review (1 changed)"
    )
    # While the review waits (its dataset pushed, the phase not done) the row says so.
    done(config, 2, PHASE_NAMES[: PHASE_NAMES.index("review")])
    paths = Driver(load_config(config), progress=False).paths.round(2)
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.review_push.write_text("{}")
    row2 = run_status(Driver(load_config(config), progress=False), live=False)[1]
    assert row2.phase == "review" and row2.labeling_text().endswith(" · in review")


def test_the_latest_evaluation_is_shown(config: Path) -> None:
    from loop.evaluation.questions import EvalQuestion
    from loop.evaluation.report import build_report, write_report
    from loop.evaluation.stats import A, Judgement
    from loop.paths import RunPaths

    done(config, 1, ("train",))
    qs = [EvalQuestion(f"q{i}", [{"role": "user", "content": "?"}], "r") for i in range(4)]
    answers = {m: {q.id: "r" for q in qs} for m in ("base", "round-1")}
    run = RunPaths(load_config(config).run_dir())
    for name, winner in (("old", "base"), ("new", "round-1")):
        js = [Judgement(q.id, winner, "round-1" if winner == "base" else "base", A, "ann") for q in qs]
        report = build_report(name, ["base", "round-1"], qs, 4, js, answers, bootstrap=100, seed=0, simulated=True)
        p = run.evaluation(name)
        write_report(report, p.report_json, p.report_md, None)
    out, _ = status(config, "--offline")
    assert "Latest evaluation new (" in out and "4 judgements by 1 simulated judges (a SIMULATION)" in out
    assert "round-1: strength +" in out and "vs base 100% [51%, 100%] (4W 0T 0L)" in out
