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


def demo_config_path() -> Path:
    return Path(str(resources.files("loop.demo") / "demo.yaml"))


def prepare_data(cfg: RunConfig, *, fraction: float, limit: int | None, report: Reporter) -> dict[str, str]:
    """Write the step-1 data where the config reads it, and the references beside the run (never
    where the model or the driver reads); returns the references."""
    from loop.data import write_jsonl
    from loop.demo.data import load_demo_data

    demo = load_demo_data(fraction=fraction, seed=cfg.run.seed, limit=limit)
    step1 = Path(cfg.data.path)
    if not step1.exists():
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
) -> DemoResult:
    from argilla_setup import server
    from loop.demo.report import write_report
    from loop.driver import Driver

    cfg = load_config(config_path or demo_config_path())
    if rounds is not None:
        cfg.run.max_rounds = rounds
    simulated = simulate_labelers > 0
    if simulated:
        cfg.argilla.labelers = [f"sim-labeler-{i}" for i in range(1, simulate_labelers + 1)]
        cfg.argilla.min_submitted = simulate_labelers
        report(
            f"SIMULATION: {simulate_labelers} simulated labelers ({', '.join(cfg.argilla.labelers)}) will rank "
            "the candidates through the real Argilla API, by similarity to the reference answers. "
            "No person labels in this run."
        )
    references = prepare_data(cfg, fraction=fraction, limit=limit, report=report)
    prepare_model(cfg, report)

    info = server.start(cfg.argilla.home, port=port)
    report(f"Argilla {'is already running' if info.already_running else 'started'} at {info.api_url}")
    home = server.resolve_home(cfg.argilla.home)

    driver = Driver(cfg, report=report, progress=progress, simulated_labelers=simulated)
    labelers = None
    if simulated:
        from loop.demo.simulate import SimulatedLabelers

        labelers = SimulatedLabelers(
            info.api_url,
            home,
            cfg.argilla.labelers,
            references,
            run=cfg.run.name,
            workspace=cfg.argilla.workspace,
            seed=cfg.run.seed,
        )
        labelers.start()
    else:
        report(
            f"Waiting for real labelers ({', '.join(cfg.argilla.labelers)}): their accounts are created when round 1 "
            f"is pushed, with passwords printed once (kept 0600 in {home / 'users'}). Open {info.api_url}, sign in, "
            "open the round's dataset, rank the answers best to worst (ties allowed), write a better answer when "
            "none is right, and submit. This run resumes where it stopped if you interrupt it."
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
    title = f"pickloop demo ({'simulated labelers' if simulated else 'human labelers'})"
    rows, md, png = write_report(driver, references, title=title)
    if labelers is not None:
        write_json(
            driver.run_dir / "simulated_labelers.json",
            {name: vars(st) for name, st in labelers.stats.items()},
        )
    return DemoResult(driver.run_dir, rows, md, png, simulated)
