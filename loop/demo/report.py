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
from loop.phases.aggregate import CONFLICT_CHOICES


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
                dataset_f1(load_examples(state.round_output(n)), references),
                greedy_f1(load_candidates(paths.candidates), references),
                _choices(agg, _summary(state, n, "review")),
                agg.agreement if agg else None,
                train.final_loss if train else None,
                {
                    p: round(rec.seconds, 1)
                    for p in PHASE_NAMES
                    if (rec := state.record(n, p)) and not (rec.summary or {}).get("skipped")  # a no-op phase
                },
            )
        )
    return rows


BAR_KINDS = {
    ("original",): "original",
    ("model",): "model",
    ("edited",): "edited",
    CONFLICT_CHOICES: "conflict: current kept",
    ("auto_kept",): "auto-kept (not asked)",
}
"""Stacked bars of the choices plot: every record of the round lands in exactly one."""


def _choices(agg, review: dict | None) -> dict[str, int]:
    """The round's choices: the review's count when it decided conflicted turns (plus `reviewed`: how
    many of them it decided, counted in their choice too), else aggregate's."""
    if review and review.get("rewritten"):
        return {**review["choices"], "reviewed": int(review.get("reviewed") or 0)}
    return dict(agg.choices) if agg else {}


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
        conflicts = sum(r.choices.get(k, 0) for k in CONFLICT_CHOICES)
        if conflicts:  # labelers disagreed; `aggregate.on_conflict` kept the current answer
            choices += f" (+{conflicts} conflicts kept)"
        if r.choices.get("reviewed"):  # conflicts the review phase decided, counted in their choice
            choices += f" ({r.choices['reviewed']} decided by review)"
        times = ", ".join(f"{p} {s:g}" for p, s in r.seconds.items()) or "-"
        lines.append(
            f"| {r.round} | {_fmt(r.data_f1)} | {_fmt(r.model_f1)} | {choices} | {_fmt(r.agreement, 2)} | "
            f"{_fmt(r.final_loss)} | {times} |"
        )
    return "\n".join(lines) + "\n"


COLUMNS = {
    "round": "0 is the step-1 data before any round; n is the state after round n.",
    "data F1 vs reference": "mean token F1 of the dataset's answers against the reference answers (the "
    "untouched FAQ, which only this report and the simulated labelers see): does selection repair the data?",
    "model F1 vs reference": "mean token F1 of the round's tuned model's greedy answers to the training "
    "questions: does the model get better?",
    "original / model / edited": "records whose chosen answer was the dataset's current one, a model "
    "candidate, or an answer a labeler wrote; conflicts a review decided (`aggregate.on_conflict: review`) "
    "count in their choice and once more as decided by review.",
    "labeler agreement (W)": "Kendall's W of the labelers' rankings of a record, 0 (none) to 1 (identical), "
    "averaged over the records with two or more rankings; - when there are none.",
    "train loss": "the round's final training loss.",
    "time per phase (s)": "wall-clock seconds of each phase (wait: until the labelers finished).",
}


def summary_line(rows: list[RoundRow], simulated: bool | None = None) -> str:
    """One sentence: data F1 from X to Y, model F1 from A to B, over N rounds, with which labelers."""
    first, last = rows[0], rows[-1]
    rounds = len(rows) - 1
    who = {True: "simulated labelers", False: "human labelers", None: "labelers"}[simulated]
    text = f"Over {rounds} round{'s' if rounds != 1 else ''} with {who}, the dataset's token F1 against the reference went from {first.data_f1:.3f} to {last.data_f1:.3f}"
    models = [r for r in rows if r.model_f1 is not None]
    if len(models) > 1:
        text += f", the tuned model's from {models[0].model_f1:.3f} (round {models[0].round}) to {models[-1].model_f1:.3f}"
    elif models:
        text += f", the tuned model's was {models[0].model_f1:.3f} after round {models[0].round}"
    return text + "."


def markdown_report(
    rows: list[RoundRow], *, title: str, plot_name: str, simulated: bool | None = None
) -> str:
    """The report: a summary line, the plot (relative link), the table and what its columns mean."""
    legend = "\n".join(f"- **{name}**: {text}" for name, text in COLUMNS.items())
    return (
        f"# {title}\n\n{summary_line(rows, simulated)}\n\n![token F1 per round and labelers' choices]({plot_name})\n\n"
        f"{markdown_table(rows)}\n{legend}\n"
    )


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
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.2), "ncol": 3, "frameon": False}
    ax1.legend(**below)  # below the axes: inside, it covered points and bars
    ax1.set_title("Agreement with the reference")
    chosen = [r for r in rows if r.choices]
    bottom = [0] * len(chosen)
    for kind, label in BAR_KINDS.items():
        vals = [sum(r.choices.get(k, 0) for k in kind) for r in chosen]
        if not any(vals):  # no empty entries in the legend
            continue
        ax2.bar([r.round for r in chosen], vals, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax2.set_xlabel("round")
    ax2.set_ylabel("records")
    ax2.set_xticks([r.round for r in chosen] or [1])
    ax2.legend(**below)
    ax2.set_title("Labelers' choices")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(
    driver, references: Mapping[str, str], *, title: str, simulated: bool | None = None
) -> tuple[list[RoundRow], Path, Path]:
    """`report.json`, `report.md` (linking `report.png` beside it) and `report.png` in the run
    directory. `simulated` defaults to the driver's `simulated_labelers`."""
    rows = build_rows(driver, references)
    simulated = driver.simulated_labelers if simulated is None else simulated
    out = driver.run_dir
    write_json(out / "report.json", [asdict(r) for r in rows])
    png = plot(rows, out / "report.png", title)
    md = out / "report.md"
    write_text(md, markdown_report(rows, title=title, plot_name=png.name, simulated=simulated))
    return rows, md, png


def load_rows(path: Path) -> list[RoundRow]:
    return [RoundRow(**r) for r in json.loads(path.read_text())]
