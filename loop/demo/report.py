"""The demo's per-round report: does selection repair the data, and does the model get better?

Two curves per round, both token F1 against the reference answers (which only the report and the
simulated labelers see): the dataset's answers, and the tuned model's greedy answers to the training
questions. Plus choices by kind, labeler agreement, train loss and time per phase. Written as JSON,
Markdown and a PNG plot in the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loop.demo.metrics import mean, token_f1
from loop.fsutil import atomic_path, write_json, write_text
from loop.phases import PHASE_NAMES, PHASES


@dataclass(frozen=True)
class RoundRow:
    round: int
    data_f1: float  # the dataset after this round's selection (round 0: the step-1 data)
    model_f1: float | None  # this round's model, greedy, on the training questions
    choices: dict[str, int] = field(default_factory=dict)
    agreement: float | None = None
    final_loss: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def dataset_f1(examples, references: Mapping[str, str]) -> float:
    """Mean token F1 of the final assistant answer of each example with a reference."""
    scores = [
        token_f1(ex.messages[-1]["content"], references[ex.id]) for ex in examples if ex.id in references
    ]
    return mean(scores)


def greedy_f1(turns, references: Mapping[str, str]) -> float | None:
    """Mean token F1 of the greedy candidate of each turn (the model's own best answer)."""
    scores = []
    for t in turns:
        if t.example_id not in references:
            continue
        greedy = next((c for c in t.candidates if any(s.kind == "greedy" for s in c.settings)), None)
        text = greedy.text if greedy else ""  # an empty greedy answer scores as empty, not as the data
        scores.append(token_f1(text, references[t.example_id]))
    return mean(scores) if scores else None


def build_rows(driver, references: Mapping[str, str]) -> list[RoundRow]:
    """Rows for round 0 (the step-1 data) and every finished round of the driver's run."""
    from loop.data import load_examples
    from loop.phases.generate import load_candidates

    state = driver.state()
    rows = [RoundRow(0, dataset_f1(driver.context(1).examples(), references), None)]
    for n in state.finished_rounds():
        paths = driver.paths.round(n)
        agg = PHASES["aggregate"].summary_from(_summary(state, n, "aggregate"))
        train = PHASES["train"].summary_from(_summary(state, n, "train"))
        rows.append(
            RoundRow(
                n,
                dataset_f1(load_examples(paths.output), references),
                greedy_f1(load_candidates(paths.candidates), references),
                dict(agg.choices) if agg else {},
                agg.agreement if agg else None,
                train.final_loss if train else None,
                {p: round(state.record(n, p).seconds, 1) for p in PHASE_NAMES if state.record(n, p)},
            )
        )
    return rows


def _summary(state, n: int, phase: str) -> dict | None:
    rec = state.record(n, phase)
    return rec.summary if rec else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[RoundRow]) -> str:
    head = "| round | data F1 vs reference | model F1 vs reference | original / model / edited | labeler agreement (W) | train loss | time per phase (s) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        choices = (
            " / ".join(str(r.choices.get(k, 0)) for k in ("original", "model", "edited"))
            if r.choices
            else "-"
        )
        if r.choices.get("auto_kept"):  # turns `select` did not ask about
            choices += f" (+{r.choices['auto_kept']} auto-kept)"
        times = ", ".join(f"{p} {s:g}" for p, s in r.seconds.items()) or "-"
        lines.append(
            f"| {r.round} | {_fmt(r.data_f1)} | {_fmt(r.model_f1)} | {choices} | {_fmt(r.agreement, 2)} | "
            f"{_fmt(r.final_loss)} | {times} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[RoundRow], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    rounds = [r.round for r in rows]
    ax1.plot(rounds, [r.data_f1 for r in rows], "o-", label="dataset answers")
    model = [(r.round, r.model_f1) for r in rows if r.model_f1 is not None]
    if model:
        ax1.plot([m[0] for m in model], [m[1] for m in model], "s--", label="tuned model (greedy)")
    ax1.set_xlabel("round")
    ax1.set_ylabel("token F1 vs reference")
    ax1.set_xticks(rounds)
    ax1.set_ylim(0, 1)
    ax1.legend(loc="lower right")
    ax1.set_title("Agreement with the reference")
    chosen = [r for r in rows if r.choices]
    bottom = [0] * len(chosen)
    for kind in ("original", "model", "edited", "auto_kept"):
        vals = [r.choices.get(kind, 0) for r in chosen]
        ax2.bar([r.round for r in chosen], vals, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax2.set_xlabel("round")
    ax2.set_ylabel("records")
    ax2.set_xticks([r.round for r in chosen] or [1])
    ax2.legend()
    ax2.set_title("Labelers' choices")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_report(driver, references: Mapping[str, str], *, title: str) -> tuple[list[RoundRow], Path, Path]:
    rows = build_rows(driver, references)
    out = driver.run_dir
    write_json(out / "report.json", [asdict(r) for r in rows])
    md = out / "report.md"
    write_text(md, f"# {title}\n\n" + markdown_table(rows))
    png = plot(rows, out / "report.png", title)
    return rows, md, png


def load_rows(path: Path) -> list[RoundRow]:
    return [RoundRow(**r) for r in json.loads(path.read_text())]
