"""The evaluation's results: `report.json` (everything, for `status`, the card and scripts), `report.md`
(for people) and a PNG (win rates with their 95% intervals, Bradley–Terry strengths with theirs)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loop.evaluation import stats
from loop.evaluation.questions import EvalQuestion
from loop.evaluation.stats import Judgement
from loop.fsutil import atomic_path, write_json, write_text

BASE = "base"


@dataclass(frozen=True)
class EvalReport:
    name: str
    models: list[str]
    questions: int
    records: int
    judgements: int
    annotators: list[str]
    pairs: list[dict[str, Any]]  # stats.PairResult as dicts
    strengths: list[dict[str, Any]]  # stats.Strength as dicts
    position_bias: dict[str, Any]
    agreement: dict[str, Any]
    reference_f1: dict[str, float]  # model -> mean token-F1 vs the references (when there are any)
    warnings: list[str]
    simulated: bool = False
    created_at: str = ""
    bootstrap: int = 0
    decisive_needed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def strength_of(self, model: str) -> dict[str, Any] | None:
        return next((s for s in self.strengths if s["model"] == model), None)

    def versus(self, model: str, other: str = BASE) -> dict[str, Any] | None:
        """`model`'s win rate (ties half) against `other`, with its interval, when they were compared."""
        for p in self.pairs:
            if (p["model"], p["other"]) == (model, other):
                return p
            if (p["model"], p["other"]) == (other, model):
                return {
                    **p,
                    "model": model,
                    "other": other,
                    "wins": p["losses"],
                    "losses": p["wins"],
                    "win_rate": 1 - p["win_rate"],
                    "low": 1 - p["high"],
                    "high": 1 - p["low"],
                }
        return None

    def status_lines(self) -> list[str]:
        """One line per model: strength and win rate against base (`pickloop status`, the card)."""
        out = []
        for model in self.models:
            s = self.strength_of(model)
            parts = [
                f"{model}: strength {s['strength']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}]" if s else model
            ]
            v = self.versus(model) if model != BASE else None
            if v:
                parts.append(
                    f"vs base {v['win_rate']:.0%} [{v['low']:.0%}, {v['high']:.0%}] "
                    f"({v['wins']}W {v['ties']}T {v['losses']}L)"
                )
            if model in self.reference_f1:
                parts.append(f"token-F1 {self.reference_f1[model]:.3f}")
            out.append(" · ".join(parts))
        return out


def build_report(
    name: str,
    models: Sequence[str],
    questions: Sequence[EvalQuestion],
    records: int,
    judgements: Sequence[Judgement],
    answers: dict[str, dict[str, str]],
    *,
    bootstrap: int,
    seed: int,
    simulated: bool = False,
) -> EvalReport:
    pairs = stats.pair_results(judgements, list(reversed(models)))  # later versions first: "round-3 vs base"
    strengths = stats.strengths(judgements, models, resamples=bootstrap, seed=seed) if judgements else []
    references = {q.id: q.reference for q in questions}
    f1 = {}
    for m in models:
        got = stats.reference_f1(answers[m], references, m)
        if got is not None:
            f1[m] = got.mean_f1
    warnings = stats.power_warnings(pairs)
    bias = stats.position_bias(judgements)
    if bias.decisive and bias.significant:
        warnings.append(
            f"position bias: Answer A won {bias.first_wins} of {bias.decisive} decisive comparisons "
            f"(p = {bias.p_value:.3g}); positions are shuffled, so model results are unbiased, but judges "
            "should be told to read both answers"
        )
    if not judgements:
        warnings.append("no submitted judgements yet: nothing to compare")
    return EvalReport(
        name=name,
        models=list(models),
        questions=len(questions),
        records=records,
        judgements=len(judgements),
        annotators=sorted({j.annotator for j in judgements}),
        pairs=[{**asdict(p), "n": p.n, "decisive": p.decisive} for p in pairs],
        strengths=[asdict(s) for s in strengths],
        position_bias=asdict(bias),
        agreement=asdict(stats.agreement(judgements)),
        reference_f1=f1,
        warnings=warnings,
        simulated=simulated,
        created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        bootstrap=bootstrap,
        decisive_needed=stats.decisive_needed(0.6),
    )


def _finite(obj: Any) -> Any:
    """NaN (a rate with no data) as null, so report.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write_report(report: EvalReport, json_path: Path, md_path: Path, png_path: Path | None) -> None:
    write_json(json_path, _finite(asdict(report)))
    write_text(md_path, render_markdown(report))
    if png_path is not None:
        plot(report, png_path)


def read_report(path: Path) -> EvalReport | None:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    known = EvalReport.__dataclass_fields__
    return EvalReport(**{k: v for k, v in raw.items() if k in known})


def latest_report(run_dir: Path) -> EvalReport | None:
    """The most recent finished evaluation of a run (by its report's time), or None."""
    found = [(read_report(p), p.stat().st_mtime_ns) for p in (Path(run_dir) / "eval").glob("*/report.json")]
    found = [(r, t) for r, t in found if r is not None]
    return max(found, key=lambda rt: (rt[0].created_at, rt[1]))[0] if found else None


def card_entry(r: EvalReport) -> dict:
    """The report as the Hub card's lineage shows it (`RoundStats.evaluation`)."""
    return {"name": r.name, "headline": headline(r), "lines": r.status_lines()}


def headline(r: EvalReport) -> str:
    """`evaluation NAME (2026-12-01, 40 judgements by 2 simulated judges)`."""
    who = "simulated judges (a SIMULATION)" if r.simulated else "judges"
    return (
        f"evaluation {r.name} ({r.created_at[:10]}, {r.judgements} judgements by {len(r.annotators)} {who})"
    )


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def render_markdown(r: EvalReport) -> str:
    n = len(r.annotators)
    who = (
        f"**simulated judge{'s' if n != 1 else ''}** (a SIMULATION: they prefer the answer closer to the "
        "reference)"
        if r.simulated
        else f"judge{'s' if n != 1 else ''}"
    )
    lines = [
        f"# Evaluation `{r.name}`",
        "",
        f"{len(r.models)} models ({', '.join(r.models)}) answered {r.questions} evaluation questions (never trained on) greedily; "
        f"{r.records} blind A/B records, {r.judgements} judgements by {n} {who}.",
        "",
        "## Pairwise results (ties count half; 95% Wilson intervals)",
        "",
        "| model | vs | wins | ties | losses | win rate | 95% interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in r.pairs:
        lines.append(
            f"| {p['model']} | {p['other']} | {p['wins']} | {p['ties']} | {p['losses']} | {_pct(p['win_rate'])} "
            f"| {_pct(p['low'])} – {_pct(p['high'])} |"
        )
    if r.strengths:
        lines += [
            "",
            f"## Bradley–Terry strengths (log scale, mean 0; 95% intervals from {r.bootstrap} bootstrap "
            "resamples of the questions)",
            "",
            "| model | strength | 95% interval |" + (" token-F1 vs reference |" if r.reference_f1 else ""),
            "|---|---|---|" + ("---|" if r.reference_f1 else ""),
        ]
        for s in sorted(r.strengths, key=lambda s: -s["strength"]):
            f1 = (
                f" {r.reference_f1[s['model']]:.3f} |"
                if s["model"] in r.reference_f1
                else (" - |" if r.reference_f1 else "")
            )
            lines.append(f"| {s['model']} | {s['strength']:+.2f} | {s['low']:+.2f} – {s['high']:+.2f} |{f1}")
    b, a = r.position_bias, r.agreement
    lines += [
        "",
        "## Checks",
        "",
        f"- Position bias: Answer A won {b['first_wins']} of {b['decisive']} decisive judgements "
        f"({_pct(b['rate'])}; exact binomial test p = {b['p_value']:.3g}).",
        "- Agreement: "
        + (
            f"{'Cohen’s' if a['method'] == 'cohen' else 'Fleiss’'} kappa {a['kappa']:.2f} on {a['records']} records "
            f"judged by two or more of {a['annotators']} annotators."
            if a["kappa"] is not None and not math.isnan(a["kappa"])
            else "no record was judged by two annotators."
        ),
        *(
            [
                f"- Every judgement counts ({r.judgements} on {r.records} records): with several judges per "
                "record the Wilson intervals treat their verdicts as independent and are optimistic when judges "
                "agree; the strengths' bootstrap resamples questions, all judges of a question together."
            ]
            if r.judgements > r.records
            else []
        ),
        f"- Power: about {r.decisive_needed} decisive comparisons per pair are needed to tell a 60/40 "
        "preference from a coin flip (95% confidence, 80% power).",
    ]
    if r.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r.warnings]
    return "\n".join(lines) + "\n"


def plot(r: EvalReport, path: Path) -> None:
    """Win rate of each pair (with its interval, 50% line) and each model's strength (with its interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(3.0, 0.5 * max(len(r.pairs), len(r.models)) + 1.5))
    )
    labels = [f"{p['model']} vs {p['other']}" for p in r.pairs]
    rates = [p["win_rate"] if p["win_rate"] == p["win_rate"] else 0.5 for p in r.pairs]
    errs = [
        [max(0.0, x - p["low"]) for x, p in zip(rates, r.pairs, strict=True)],
        [max(0.0, p["high"] - x) for x, p in zip(rates, r.pairs, strict=True)],
    ]
    left.barh(labels, rates, xerr=errs, color="#4C72B0", capsize=4)
    left.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    left.set_xlim(0, 1)
    left.set_xlabel("win rate of the first model (ties half), 95% Wilson interval")
    left.invert_yaxis()
    if r.strengths:
        names = [s["model"] for s in r.strengths]
        values = [s["strength"] for s in r.strengths]
        serr = [
            [s["strength"] - s["low"] for s in r.strengths],
            [s["high"] - s["strength"] for s in r.strengths],
        ]
        right.errorbar(values, names, xerr=serr, fmt="o", color="#DD8452", capsize=4)
        right.axvline(0, color="grey", linestyle="--", linewidth=1)
        right.set_xlabel("Bradley–Terry strength (log), 95% bootstrap interval")
        right.invert_yaxis()
    title = f"pickloop evaluation {r.name}: {r.judgements} judgements"
    fig.suptitle(title + (" (SIMULATED judges)" if r.simulated else ""))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
