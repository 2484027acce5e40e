"""`pickloop demo`: the whole loop on the embedded default, offline, on a laptop-sized machine.

It starts (or reuses) the embedded Argilla, derives the imperfect step-1 data from the Python FAQ
shipped in the package, builds the tiny model, and runs the rounds of the packaged demo config.
Labelers are real people by default (the URL and their credentials are printed); with
`simulate_labelers=N`, N simulated annotator accounts rank through the real Argilla API instead,
and every output (console, dataset card lineage, report) says it was a simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from loop.config import RunConfig, load_config
from loop.errors import PickloopError
from loop.fsutil import write_json

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    rows: list  # loop.demo.report.RoundRow
    report_md: Path
    plot_png: Path
    simulated: bool
    evaluation: object | None = None  # loop.evaluation.run.EvalResult with `--eval`


def demo_config_path() -> Path:
    return Path(str(resources.files("loop.demo") / "demo.yaml"))


def prepare_data(
    cfg: RunConfig, *, fraction: float, limit: int | None, report: Reporter, short_answers: bool = True
) -> dict[str, str]:
    """Write the step-1 data where the config reads it, and the references beside the run (never
    where the model or the driver reads); returns the references."""
    from loop.data import load_jsonl, write_jsonl
    from loop.demo.data import load_demo_data

    demo = load_demo_data(fraction=fraction, seed=cfg.run.seed, limit=limit, short=short_answers)
    step1 = Path(cfg.data.path)
    # Rewritten when the options (or this version's demo data) differ, so the references always
    # match it; a run that already started keeps its own snapshot of round 1's input.
    if not step1.exists() or load_jsonl(step1) != demo.examples:
        write_jsonl(demo.examples, step1)
        report(
            f"step-1 data: {len(demo.examples)} Python FAQ answers, {len(demo.degraded)} of them degraded "
            f"({fraction:.0%}: truncated, swapped or cut to a sentence) -> {step1}"
        )
    write_json(step1.parent / "references.json", demo.references)
    write_json(step1.parent / "degraded.json", demo.degraded)
    return demo.references


def prepare_model(cfg: RunConfig, report: Reporter) -> None:
    from loop.demo.data import faq_path
    from loop.demo.tiny_model import build_from_data

    out = Path(cfg.model.name_or_path)
    if not (out / "config.json").exists():
        build_from_data(faq_path(), out)
        report(f"tiny model (random weights, BPE trained on the FAQ) -> {out}")


def handoff(cfg: RunConfig, api_url: str, home: Path, outcome) -> str:
    """What the labelers need, printed once a round's records are in Argilla (not before)."""
    from argilla_setup.users import credentials_file

    files = ", ".join(f"{name}: {credentials_file(name, home)}" for name in cfg.argilla.labelers)
    return (
        f"Round {outcome.round} is ready for labelers: {outcome.summary.records} records in dataset "
        f"{outcome.summary.dataset}. Sign in at {api_url}/sign-in (user names and passwords in the 0600 files "
        f"{files}), open the dataset, rank the answers best to worst (ties allowed), write a better answer "
        "when none is right, and submit. The demo carries on when every record has its rankings."
    )


def round_result(driver, references: dict[str, str], n: int) -> str:
    """One line per finished round: how close the data and the model came to the reference."""
    from loop.demo.report import build_rows

    rows = build_rows(driver, references)
    row = next(r for r in rows if r.round == n)
    start = rows[0].data_f1
    model = "-" if row.model_f1 is None else f"{row.model_f1:.3f}"
    choices = " / ".join(str(row.choices.get(k, 0)) for k in ("original", "model", "edited"))
    return (
        f"round {n} result: data F1 vs reference {start:.3f} (step 1) -> {row.data_f1:.3f}, "
        f"model F1 {model}; kept original / model / edited: {choices}"
    )


def run_demo(
    *,
    config_path: Path | None = None,
    rounds: int | None = None,
    simulate_labelers: int = 0,
    fraction: float = 0.4,
    limit: int | None = None,
    port: int = 6900,
    report: Reporter = print,
    progress: bool = True,
    short_answers: bool = True,
    evaluate: bool = False,
) -> DemoResult:
    from argilla_setup import server
    from loop.demo.report import write_report
    from loop.driver import Driver
    from loop.phases import PHASE_NAMES

    cfg = load_config(config_path or demo_config_path())
    if rounds is not None:
        cfg.run.max_rounds = rounds
    simulated = simulate_labelers > 0
    if evaluate:
        # Its own run: the hold-out must be split off before round 1, so a run without it cannot be reused.
        cfg.run.name = f"{cfg.run.name}-eval"
    if simulated:
        # Its own run (and Argilla datasets): a later demo with people never resumes a simulated run.
        cfg.run.name = f"{cfg.run.name}-simulated"
        cfg.argilla.labelers = [f"sim-labeler-{i}" for i in range(1, simulate_labelers + 1)]
        report(
            f"SIMULATION: {simulate_labelers} simulated labelers ({', '.join(cfg.argilla.labelers)}) will rank "
            "the candidates through the real Argilla API, by similarity to the reference answers. "
            f"No person labels in this run (run '{cfg.run.name}', kept apart from the demo with people)."
        )
        if cfg.argilla.min_submitted < simulate_labelers:
            report(
                f"Each record waits for all {simulate_labelers} simulated labelers (argilla.min_submitted "
                f"{cfg.argilla.min_submitted} -> {simulate_labelers}), so the report can measure their agreement."
            )
            cfg.argilla.min_submitted = simulate_labelers
        if cfg.aggregate.on_conflict == "review" and not cfg.review.reviewers:
            cfg.review.reviewers = ["sim-reviewer"]
            report(
                "SIMULATION: records the simulated labelers disagree on go to a simulated reviewer "
                "(sim-reviewer, one more labeler ranking the same way) in a review dataset of the same round."
            )
    if evaluate:
        if not cfg.eval.configured():
            cfg.eval.holdout_fraction = DEMO_HOLDOUT
        report(
            "Evaluation: "
            + (
                f"{cfg.eval.holdout_fraction:.0%} of the step-1 questions are held out before round 1 and never "
                "trained on"
                if cfg.eval.holdout_fraction
                else f"questions from {cfg.eval.path}"
            )
            + "; after the last round, base and every round's model answer them and "
            + ("simulated judges (a SIMULATION) " if simulated else "the labelers ")
            + "compare the answers blind, two at a time."
        )
    references = prepare_data(cfg, fraction=fraction, limit=limit, report=report, short_answers=short_answers)
    prepare_model(cfg, report)

    info = server.start(cfg.argilla.home, port=port)
    report(f"Argilla {'is already running' if info.already_running else 'started'} at {info.api_url}")
    home = server.resolve_home(cfg.argilla.home)

    def on_phase_done(outcome) -> None:
        if outcome.phase == "push" and not simulated:
            report(handoff(cfg, info.api_url, home, outcome))
        if outcome.phase == PHASE_NAMES[-1]:  # the round is finished (published, maybe evaluated)
            report(round_result(driver, references, outcome.round))

    driver = Driver(
        cfg, report=report, progress=progress, simulated_labelers=simulated, on_phase_done=on_phase_done
    )
    labelers = None
    if simulated:
        from loop.demo.simulate import SimulatedLabelers

        labelers = SimulatedLabelers(
            info.api_url,
            home,
            [
                *cfg.argilla.labelers,
                *(cfg.review.reviewers if cfg.aggregate.on_conflict == "review" else []),
            ],
            references,
            run=cfg.run.name,
            workspace=cfg.argilla.workspace,
            seed=cfg.run.seed,
        )
        labelers.start()
    else:
        report(
            f"Labelers: {', '.join(cfg.argilla.labelers)}. Each round trains and generates first (a few minutes); "
            "when its records are in Argilla, this prints where to sign in and what to do. "
            "Interrupt and re-run at any time: the run resumes where it stopped."
        )
    try:
        driver.run()
    except KeyboardInterrupt:
        if labelers is not None and labelers.error is not None:
            raise PickloopError(f"the simulated labelers failed: {labelers.error}") from labelers.error
        raise
    finally:
        if labelers is not None:
            labelers.stop()
    evaluation = None
    if evaluate:
        evaluation = run_demo_eval(driver, cfg, info.api_url, home, references, simulated, report, progress)
    title = f"pickloop demo ({'simulated labelers' if simulated else 'human labelers'})"
    rows, md, png = write_report(driver, references, title=title)
    if labelers is not None:
        write_json(
            driver.run_dir / "simulated_labelers.json",
            {name: vars(st) for name, st in labelers.stats.items()},
        )
    return DemoResult(driver.run_dir, rows, md, png, simulated, evaluation)


DEMO_HOLDOUT = 0.1
"""`--eval` without an `eval` section: this fraction of the step-1 questions is held out (≈17 of 175)."""


def run_demo_eval(
    driver, cfg: RunConfig, api_url: str, home: Path, references, simulated: bool, report, progress
):
    """Base against every round's model on the held-out questions; with simulated labelers, they judge
    too (a SIMULATION: the answer with the higher token F1 against the FAQ's own answer wins)."""
    from loop.demo.simulate import SimulatedJudges
    from loop.evaluation.run import run_eval

    models = ["base", *(f"round-{n}" for n in driver.state().finished_rounds())]
    judges = None
    if simulated:
        judges = SimulatedJudges(
            api_url,
            home,
            cfg.argilla.labelers,
            references,
            run=cfg.run.name,
            workspace=cfg.argilla.workspace,
            seed=cfg.run.seed,
        )
        report(
            f"SIMULATION: {len(cfg.argilla.labelers)} simulated judges compare the answers of "
            f"{', '.join(models)} blind; each prefers the answer closer to the FAQ's own (token F1; a tie when equal)."
        )
        judges.start()
    try:
        result = run_eval(
            cfg,
            models,
            name="demo",
            report=report,
            progress=progress,
            simulated=simulated,
            references=references,
        )
    except KeyboardInterrupt:
        if judges is not None and judges.error is not None:
            raise PickloopError(f"the simulated judges failed: {judges.error}") from judges.error
        raise
    finally:
        if judges is not None:
            judges.stop()
    return result
