"""The unattended demo's wall time and per-phase times, against the demo's previous settings.

    python benchmarks/bench_demo.py                 # both variants, 3 rounds (~15 min on 2 cores)
    python benchmarks/bench_demo.py --rounds 1      # round 1 only (~5 min)
    python benchmarks/bench_demo.py --only current  # today's demo alone (~4 min)

Each variant runs `pickloop demo --simulate-labelers 2` in its own temp home (fresh Argilla, fresh
tiny model), one after the other on the same machine:
- current: the packaged demo config (short FAQ answers, max_new_tokens auto, 2 threads, 20 epochs
  in round 1 and 6 in later rounds);
- baseline: the demo as it was before (whole FAQ answers, max_new_tokens 96, 1 thread, 20 epochs
  every round).
Printed: wall time per variant, time per phase and round, the data/model F1 curves, and the
baseline/current ratios. Targets (issue #10): the whole 3-round demo <= 5 minutes on 2 idle cores,
round 1's result within 2 minutes, curves no worse than the baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

PHASES = ("train", "generate", "push", "wait", "pull", "aggregate", "publish")


def baseline_config(home: Path) -> Path:
    from loop.demo.run import demo_config_path

    cfg = yaml.safe_load(demo_config_path().read_text())
    cfg["model"]["cpu_threads"] = 1
    cfg["train"].pop("sft_later_rounds", None)
    cfg["generate"]["max_new_tokens"] = 96
    path = home / "baseline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_variant(name: str, rounds: int, port: int) -> dict:
    from argilla_setup import server
    from loop.demo.run import run_demo

    home = Path(tempfile.mkdtemp(prefix=f"bench-demo-{name}-"))
    os.environ["PICKLOOP_HOME"] = str(home)
    lines: list[tuple[float, str]] = []
    started = time.monotonic()

    def report(message: str) -> None:
        lines.append((time.monotonic() - started, message))

    try:
        result = run_demo(
            config_path=baseline_config(home) if name == "baseline" else None,
            rounds=rounds,
            simulate_labelers=2,
            port=port,
            report=report,
            progress=False,
            short_answers=name != "baseline",
        )
    finally:
        server.stop(home / "argilla")
    wall = time.monotonic() - started
    first_result = next((t for t, m in lines if m.startswith("round 1 result:")), None)
    state = json.loads((result.run_dir / "state.json").read_text())["rounds"]
    per_phase = {
        int(n): {p: phases[p]["seconds"] for p in PHASES if p in phases} for n, phases in state.items()
    }
    rows = [{"round": r.round, "data_f1": r.data_f1, "model_f1": r.model_f1} for r in result.rows]
    return {"wall_s": wall, "first_result_s": first_result, "phases": per_phase, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("current", "baseline"))
    parser.add_argument("--port", type=int, default=6977)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    a = parser.parse_args()
    from argilla_setup import server

    names = [a.only] if a.only else ["current", "baseline"]
    results = {name: run_variant(name, a.rounds, server.free_port()) for name in names}

    print(
        f"demo, {a.rounds} round(s), 2 simulated labelers, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}"
    )
    for name, r in results.items():
        print(f"\n{name}: {r['wall_s']:.0f} s wall; round 1 result after {r['first_result_s'] or 0:.0f} s")
        print("round | " + " | ".join(PHASES) + " | data F1 | model F1")
        for row in r["rows"]:
            n = row["round"]
            times = (
                " | ".join(f"{r['phases'].get(n, {}).get(p, 0):.1f}" for p in PHASES)
                if n
                else " | ".join("-" * 7)
            )
            model = "-" if row["model_f1"] is None else f"{row['model_f1']:.3f}"
            print(f"{n} | {times} | {row['data_f1']:.3f} | {model}")
    if len(results) == 2:
        cur, base = results["current"], results["baseline"]
        print(f"\nbaseline / current wall time: {base['wall_s'] / cur['wall_s']:.2f}x")
        for p in ("train", "generate"):
            b = sum(ph.get(p, 0) for ph in base["phases"].values())
            c = sum(ph.get(p, 0) for ph in cur["phases"].values())
            print(f"baseline / current {p}: {b / c:.2f}x")
        last_b, last_c = base["rows"][-1], cur["rows"][-1]
        print(
            f"final model F1: current {last_c['model_f1']:.3f} vs baseline {last_b['model_f1']:.3f}; "
            f"final data F1: current {last_c['data_f1']:.3f} vs baseline {last_b['data_f1']:.3f}"
        )
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
