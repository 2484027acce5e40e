"""The demo report from a small finished run: the rows' numbers, the Markdown table and the files.

The run directory is built with the real artifact writers (`write_jsonl`, `write_candidates`, a
parquet round output as aggregate writes it) and `RunState.mark_done`; no phase runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.config import parse_config
from loop.data import Example, to_rows, write_jsonl
from loop.demo.report import COLUMNS, build_rows, load_rows, markdown_table, summary_line, write_report
from loop.driver import Driver
from loop.phases import PHASE_NAMES
from loop.phases.generate import Candidate, SampleSpec, TurnCandidates, write_candidates
from loop.state import RunState

REFERENCES = {
    "q1": "use a list comprehension",
    "q2": "call the close method",
    "q3": "tuples are immutable",
}
QUESTIONS = {
    "q1": "How to build a list?",
    "q2": "How to close a file?",
    "q3": "Tuples?",
    "q4": "No reference?",
}
STEP1 = {"q1": "use a list comprehension", "q2": "call", "q3": "lists are mutable", "q4": "anything at all"}
OUTPUT = {
    1: {
        "q1": "use a list comprehension",
        "q2": "call the close method",
        "q3": "lists are mutable",
        "q4": "x",
    },
    2: {
        "q1": "use a list comprehension",
        "q2": "call the close method",
        "q3": "tuples are immutable",
        "q4": "x",
    },
}
GREEDY = {
    1: {"q1": "use a list", "q2": "", "q3": "tuples are immutable", "q4": "x"},
    2: {
        "q1": "use a list comprehension",
        "q2": "call the close method",
        "q3": "tuples are mutable",
        "q4": "x",
    },
}
SECONDS = {
    "train": 12.34,
    "regenerate": 0.0,
    "generate": 4.5,
    "score": 0.5,
    "push": 0.21,
    "wait": 30.0,
    "pull": 0.06,
    "aggregate": 0.0,
    "review": 0.0,
    "publish": 1.25,
    "eval": 0.0,
}
AGGREGATE = {
    1: {
        "records": 4,
        "completed": 4,
        "changed": 2,
        "choices": {"original": 2, "model": 1, "edited": 1},
        "agreement": 0.75,
    },
    2: {
        "records": 4,
        "completed": 4,
        "changed": 1,
        "choices": {"original": 3, "edited": 1},
        "agreement": None,
    },
}
TRAIN = {1: {"examples": 4, "first_loss": 5.1, "final_loss": 2.34567}, 2: {"examples": 4, "final_loss": 1.5}}


def example(ex_id: str, answer: str, **extra) -> Example:
    messages = [{"role": "user", "content": QUESTIONS[ex_id]}, {"role": "assistant", "content": answer}]
    return Example(ex_id, messages, extra)


def turn(ex_id: str, current: str, greedy: str) -> TurnCandidates:
    def cand(text: str, kind: str) -> Candidate:
        return Candidate(text, 1, -1.0, False, [SampleSpec(kind, 1.0 if kind == "sample" else None, None, 7)])

    # A perfect sampled candidate: only the greedy one may count as the model's own answer.
    cands = [cand(REFERENCES.get(ex_id, "x"), "sample"), cand(greedy, "greedy")]
    context = [{"role": "user", "content": QUESTIONS[ex_id]}]
    return TurnCandidates(ex_id, 0, 1, context, current, None, cands)


@pytest.fixture
def driver(tmp_path: Path) -> Driver:
    import datasets

    data = write_jsonl([example(i, a) for i, a in STEP1.items()], tmp_path / "step1.jsonl")
    cfg = parse_config(
        {
            "run": {"name": "report", "dir": str(tmp_path / "run")},
            "data": {"path": str(data)},
            "model": {"name_or_path": "m"},
        },
        base_dir=tmp_path,
    )
    drv = Driver(cfg, progress=False)
    state = RunState.load(drv.run_dir)
    for n in (1, 2):
        paths = drv.paths.round(n)
        before = STEP1 if n == 1 else OUTPUT[n - 1]
        write_candidates([turn(i, before[i], GREEDY[n][i]) for i in QUESTIONS], paths.candidates)
        rows = to_rows(example(i, a, round=n, choice="original") for i, a in OUTPUT[n].items())
        paths.output.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows).to_parquet(str(paths.output))
        for phase in PHASE_NAMES:
            summary = {"train": TRAIN[n], "aggregate": AGGREGATE[n], "regenerate": {"skipped": "off"}, "eval": {"skipped": "off"}}.get(
                phase, {}
            )
            state.mark_done(n, phase, f"h{n}{phase}", SECONDS[phase] * n, summary)
    state.mark_done(3, "train", "h3", 9.0, {"examples": 4, "final_loss": 0.5})  # unfinished: no row
    return drv


def test_rows_measure_the_data_and_the_models_greedy_answers(driver: Driver) -> None:
    rows = build_rows(driver, REFERENCES)
    assert [r.round for r in rows] == [0, 1, 2]
    r0, r1, r2 = rows
    # Round 0, step-1 data: q1 exact (1), q2 "call" (P 1, R 1/4: 0.4), q3 one shared token of three (1/3).
    assert r0.data_f1 == pytest.approx((1 + 0.4 + 1 / 3) / 3)
    assert (r0.model_f1, r0.choices, r0.agreement, r0.final_loss, r0.seconds) == (None, {}, None, None, {})
    # Round 1: q2 repaired. The greedy answers: "use a list" (P 1, R 3/4), an empty one (0), exact (1).
    assert r1.data_f1 == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert r1.model_f1 == pytest.approx((6 / 7 + 0 + 1) / 3)
    assert r1.choices == {"original": 2, "model": 1, "edited": 1}
    assert (r1.agreement, r1.final_loss) == (0.75, 2.34567)
    assert r1.seconds == {
        "train": 12.3,
        "generate": 4.5,
        "score": 0.5,
        "push": 0.2,
        "wait": 30.0,
        "pull": 0.1,
        "aggregate": 0.0,
        "review": 0.0,
        "publish": 1.2,
    }
    # Round 2: every answer right; the greedy q3 "tuples are mutable" shares two tokens of three.
    assert r2.data_f1 == pytest.approx(1.0)
    assert r2.model_f1 == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert (r2.choices, r2.agreement, r2.final_loss) == ({"original": 3, "edited": 1}, None, 1.5)
    assert r2.seconds["wait"] == 60.0 and r2.seconds["train"] == 24.7


def test_the_markdown_table(driver: Driver) -> None:
    lines = markdown_table(build_rows(driver, REFERENCES)).splitlines()
    assert lines[0].split("|")[1:-1] == [
        " round ",
        " data F1 vs reference ",
        " model F1 vs reference ",
        " original / model / edited ",
        " labeler agreement (W) ",
        " train loss ",
        " time per phase (s) ",
    ]
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2:] == [
        "| 0 | 0.578 | - | - | - | - | - |",
        "| 1 | 0.778 | 0.619 | 2 / 1 / 1 | 0.75 | 2.346 | "
        "train 12.3, generate 4.5, score 0.5, push 0.2, wait 30, pull 0.1, aggregate 0, review 0, publish 1.2 |",
        "| 2 | 1.000 | 0.889 | 3 / 0 / 1 | - | 1.500 | "
        "train 24.7, generate 9, score 1, push 0.4, wait 60, pull 0.1, aggregate 0, review 0, publish 2.5 |",
    ]


def test_write_report_files_load_back(driver: Driver) -> None:
    rows, md, png = write_report(driver, REFERENCES, title="Demo", simulated=True)
    run_dir = driver.run_dir
    assert (md, png) == (run_dir / "report.md", run_dir / "report.png")
    text = md.read_text()
    assert text.startswith(
        "# Demo\n\nOver 2 rounds with simulated labelers, the dataset's token F1 against the reference went "
        "from 0.578 to 1.000, the tuned model's from 0.619 (round 1) to 0.889.\n\n"
    )
    assert "](report.png)" in text  # relative: the report and the plot move together
    assert markdown_table(rows) in text
    for column in lines_of_header(markdown_table(rows)):  # every column is explained
        assert f"- **{column}**: " in text
    assert load_rows(run_dir / "report.json") == rows
    assert [r["round"] for r in json.loads((run_dir / "report.json").read_text())] == [0, 1, 2]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_a_run_with_no_finished_round_has_only_round_0(tmp_path: Path) -> None:
    data = write_jsonl([example(i, a) for i, a in STEP1.items()], tmp_path / "step1.jsonl")
    cfg = parse_config(
        {
            "run": {"name": "r0", "dir": str(tmp_path / "run")},
            "data": {"path": str(data)},
            "model": {"name_or_path": "m"},
        },
        base_dir=tmp_path,
    )
    rows = build_rows(Driver(cfg, progress=False), REFERENCES)
    assert [(r.round, r.model_f1) for r in rows] == [(0, None)]
    assert markdown_table(rows).splitlines()[2] == "| 0 | 0.578 | - | - | - | - | - |"


def lines_of_header(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].split("|")[1:-1]]


def test_every_column_has_an_explanation(driver: Driver) -> None:
    assert lines_of_header(markdown_table(build_rows(driver, REFERENCES))) == list(COLUMNS)


def test_the_summary_line_says_who_labeled(driver: Driver) -> None:
    rows = build_rows(driver, REFERENCES)
    assert "with human labelers" in summary_line(rows, simulated=False)
    assert summary_line(rows[:2], simulated=True) == (
        "Over 1 round with simulated labelers, the dataset's token F1 against the reference went from "
        "0.578 to 0.778, the tuned model's was 0.619 after round 1."
    )


def test_the_legends_are_outside_the_plot_area(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loop.demo import report

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to inspect it
    report.plot(build_rows(driver, REFERENCES), driver.run_dir / "p.png", "t")
    (fig,) = figures
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend, area = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert legend.y1 <= area.y0  # entirely below the axes: it covers no bar or point
    close(fig)


def test_every_record_is_one_bar_segment_and_the_legend_lists_only_kinds_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loop.demo import report

    rows = [
        report.RoundRow(0, 0.5, None),
        report.RoundRow(1, 0.8, 0.6, {"original": 100, "model": 5, "edited": 60, "conflict_kept": 10}),
        report.RoundRow(2, 0.9, 0.7, {"original": 150, "edited": 10, "conflict_review": 3, "conflict_kept": 2, "model": 10}),
    ]
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    report.plot(rows, tmp_path / "p.png", "t")
    (fig,) = figures
    bars = fig.axes[1]
    heights: dict[float, float] = {}
    for patch in bars.patches:
        x = round(patch.get_x() + patch.get_width() / 2)
        heights[x] = heights.get(x, 0) + patch.get_height()
    assert heights == {1: 175, 2: 175}, "conflicts are a segment of their own: the bars reach every record"
    labels = [t.get_text() for t in bars.get_legend().get_texts()]
    assert labels == ["original", "model", "edited", "conflict: current kept"], "no auto-kept: none this run"
    close(fig)


def test_a_round_the_review_decided_reads_the_reviewed_dataset(driver: Driver) -> None:
    """With a review that rewrote round 2, its row measures `reviewed.parquet` and its choices."""
    import datasets

    paths = driver.paths.round(2)
    rows = to_rows(example(i, "nothing alike", round=2) for i in OUTPUT[2])
    datasets.Dataset.from_list(rows).to_parquet(str(paths.reviewed))
    state = RunState.load(driver.run_dir)
    review = {"queued": 2, "reviewed": 2, "rewritten": True, "choices": {"original": 2, "model": 2}}
    state.rounds[2]["review"].summary = review
    state.save()
    r2 = build_rows(driver, REFERENCES)[2]
    assert r2.choices == {"original": 2, "model": 2, "reviewed": 2}
    assert r2.data_f1 == 0.0, "the reviewed dataset, not aggregate's (F1 1.0)"
    assert "2 / 2 / 0 (2 decided by review)" in markdown_table([r2])
