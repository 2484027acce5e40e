"""Rounds of 1k-100k records on the embedded stack: per-record cost of each phase, peak RSS, poll cost.

For each size N: a fresh run of N single-turn examples with K=4 candidates. The generate and score
phases' artifacts (`candidates.parquet`, `scores.parquet`, the round model's `train_config.json`)
are written directly, as those phases write them, so no model is needed; then the project's own
push, wait, pull, aggregate, review and publish phases run through a `Driver` against a real
embedded Argilla stack and the local revision store. Simulated labelers (`loop/demo/simulate.py`,
one thread per labeler, 100 records a request) answer through the annotator API while `wait` runs.

Printed per size: ms per record for each phase, the cost of one wait poll (the counts path; on the
fresh dataset and again after labeling) against listing every record (what each poll did before),
the stack's and the driver's peak RSS, and the ratios N/smallest per phase (goal: flat within 1.5x).

    python benchmarks/bench_scale.py                          # 500 and 2,000 records, a few minutes
    python benchmarks/bench_scale.py --sizes 1000,10000 --out scale.json
    python benchmarks/bench_scale.py --sizes 1000,100000 --label-timeout 120

`--label-timeout S` bounds the wait (it then proceeds with what was labeled; the table says how
many records were complete). Goals (issue 13): per-record cost flat 1k->100k within 1.5x, 100k push
<= 2 min, pull with ranks <= 30 s, one poll at 100k <= 50 ms, everything within 24 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_argilla import RssSampler, stack_pids  # noqa: E402

K = 4
PHASES = ("push", "wait", "pull", "aggregate", "review", "publish")
WORDS = [
    *[
        "python",
        "list",
        "dict",
        "tuple",
        "set",
        "string",
        "bytes",
        "file",
        "path",
        "module",
        "package",
        "import",
        "class",
        "function",
    ],
    *[
        "argument",
        "keyword",
        "default",
        "value",
        "return",
        "error",
        "exception",
        "raise",
        "try",
        "except",
        "finally",
        "loop",
    ],
    *[
        "generator",
        "yield",
        "context",
        "manager",
        "decorator",
        "closure",
        "scope",
        "global",
        "local",
        "thread",
        "process",
    ],
]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_round(run_dir: Path, data: Path, n: int, seed: int) -> dict[str, str]:
    """The data file and round 1's generate/score artifacts; returns example id -> reference answer."""
    from loop.data import Example, write_jsonl
    from loop.paths import RunPaths
    from loop.phases.generate import Candidate, SampleSpec, TurnCandidates, write_candidates
    from loop.phases.score import TurnScores, write_scores

    rng = random.Random(seed)
    examples, turns, scores, refs = [], [], [], {}
    for i in range(n):
        q, a = f"q{i}: {_text(rng, 6, 14)}?", _text(rng, 15, 40)
        ex_id = f"ex-{i:06d}"
        examples.append(Example(ex_id, [{"role": "user", "content": q}, {"role": "assistant", "content": a}]))
        refs[ex_id] = a
        cands = []
        for k in range(K):
            text = a if k == 0 and i % 5 == 0 else _text(rng, 15, 40)  # some candidates repeat the answer
            spec = SampleSpec("greedy") if k == 0 else SampleSpec("sample", 1.0, 0.95, seed + k)
            cands.append(Candidate(text, 1, -rng.random(), text == a, [spec]))
        turns.append(TurnCandidates(ex_id, 0, 1, [{"role": "user", "content": q}], a, -0.5, cands))
        scores.append(TurnScores(ex_id, 0, 1, rng.random(), None, -rng.random(), rng.random()))
    write_jsonl(examples, data)
    paths = RunPaths(run_dir).round(1)
    paths.dir.mkdir(parents=True, exist_ok=True)
    write_candidates(turns, paths.candidates)
    write_scores(scores, paths.scores)
    paths.model.mkdir(parents=True, exist_ok=True)
    (paths.model / "train_config.json").write_text(
        json.dumps({"base_model": "bench-model", "original_base": "bench-model", "strategy": "continue"})
    )
    return refs


def mark_model_phases_done(driver, n: int) -> None:
    """Record train..score as done (their artifacts are written above), chained as the driver hashes."""
    from loop.phases import PHASES as REGISTRY

    summaries = {
        "train": {"examples": n},
        "regenerate": {"skipped": "data.regenerate is not set"},
        "generate": {"turns": n, "candidates": n * K},
        "score": {"turns": n},
    }
    for name, summary in summaries.items():
        state = driver.state()
        want, keys = driver.inputs_hash(1, REGISTRY[name], state)
        state.mark_done(1, name, want, 0.0, summary, keys=keys)


def time_polls(
    api, dataset_id: str, labelers: list[str], min_submitted: int, repeat: int = 5, *, listing: bool = True
) -> dict:
    """Median seconds of one wait poll (counts) and of one listing of every record (the old poll)."""
    from loop.phases.wait import Poller, tally_pending

    poll = Poller(api, dataset_id, labelers, min_submitted, 1.0)
    poll()  # warm the connection
    counts = []
    for _ in range(repeat):
        t = time.perf_counter()
        poll()
        counts.append(time.perf_counter() - t)
    parts = {}
    for name in ("progress", "users/progress"):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            api.get(f"/api/v1/datasets/{dataset_id}/{name}")
            times.append(time.perf_counter() - t)
        parts[name] = statistics.median(times)
    out = {"poll_s": statistics.median(counts), "parts_s": parts, "tallies": poll.tallies}
    if listing:
        t = time.perf_counter()
        tally_pending(api, dataset_id, labelers, min_submitted)
        out["listing_s"] = time.perf_counter() - t
    return out


def bench_size(n: int, info, home: Path, base: Path, args) -> dict:
    import yaml

    from argilla_setup.connection import Api, Connection
    from loop.config import load_config
    from loop.demo.simulate import SimulatedLabelers
    from loop.driver import Driver

    tag = uuid.uuid4().hex[:6]
    root = base / f"n{n}-{tag}"
    root.mkdir(parents=True)
    labelers = [f"scale-{i}-{tag}" for i in range(args.labelers)]
    cfg = {
        "run": {"name": f"scale-{tag}", "dir": str(root / "run"), "seed": 0},
        "data": {"path": str(root / "data.jsonl")},
        "model": {"name_or_path": "bench-model"},
        "generate": {"k": K},
        "argilla": {
            "home": str(home),
            "workspace": f"scale-{tag}",
            "labelers": labelers,
            "min_submitted": args.min_submitted,
        },
        "wait": {
            "poll_interval_s": args.poll_interval,
            "webhooks": False,
            "timeout_s": args.label_timeout,
            "on_timeout": "proceed",
        },
    }
    (root / "pickloop.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(root / "pickloop.yaml")
    started = time.perf_counter()
    refs = write_round(config.run_dir(), root / "data.jsonl", n, seed=n)
    artifacts_s = time.perf_counter() - started
    driver = Driver(config, progress=False, report=lambda msg: None)
    mark_model_phases_done(driver, n)
    sampler = RssSampler({**stack_pids(home), "driver": os.getpid()}).start()
    row: dict = {"records": n, "artifacts_s": artifacts_s, "seconds": {}}
    try:
        row["seconds"]["push"] = driver.run_phase(1, "push").seconds
        dataset_id = json.loads(driver.paths.round(1).push.read_text())["dataset_id"]
        with Api(Connection(info.api_url, info.api_key)) as api:
            row["poll"] = time_polls(api, dataset_id, labelers, args.min_submitted)
        sims = [
            SimulatedLabelers(
                info.api_url, home, [name], refs, run=config.run.name, workspace=config.argilla.workspace
            )
            for name in labelers
        ]
        for sim in sims:
            sim.start()
        try:
            wait = driver.run_phase(1, "wait")
        finally:
            for sim in sims:
                sim.stop()
        row["seconds"]["wait"] = wait.seconds
        row["wait"] = {
            "reason": wait.summary.reason,
            "completed": wait.summary.completed,
            "polls": wait.summary.polls,
        }
        with Api(Connection(info.api_url, info.api_key)) as api:  # again, with the responses in
            row["poll_labeled"] = time_polls(api, dataset_id, labelers, args.min_submitted, listing=False)
        for name in PHASES[2:]:
            row["seconds"][name] = driver.run_phase(1, name).seconds
        pulled = json.loads(driver.paths.round(1).pulled.read_text())
        row["responses"] = sum(len(v) for v in pulled["responses"].values())
    finally:
        sampler.stop()
    row["ms_per_record"] = {k: 1000 * v / n for k, v in row["seconds"].items()}
    row["peak_rss_mib"] = {k: v / 2**20 for k, v in sampler.peak.items()}
    row["peak_rss_total_mib"] = sampler.peak_total / 2**20
    return row


def report(rows: list[dict]) -> None:
    base = rows[0]
    print(f"\nper-record cost (ms/record); ratio vs {base['records']:,} records in brackets")
    print(f"{'records':>8} " + " ".join(f"{p:>16}" for p in PHASES))
    for r in rows:
        cells = []
        for p in PHASES:
            ms = r["ms_per_record"][p]
            ratio = ms / base["ms_per_record"][p] if base["ms_per_record"][p] else float("nan")
            cells.append(f"{ms:8.3f} ({ratio:4.2f}x)")
        print(f"{r['records']:>8,} " + " ".join(f"{c:>16}" for c in cells))
    print(
        f"\n{'records':>8} {'push s':>8} {'pull s':>8} {'poll ms':>8} {'labeled':>8} {'listing ms':>10} "
        f"{'complete':>10} {'responses':>9} {'stack MiB':>9} {'driver MiB':>10}"
    )
    for r in rows:
        stack = sum(v for k, v in r["peak_rss_mib"].items() if k != "driver")
        print(
            f"{r['records']:>8,} {r['seconds']['push']:8.1f} {r['seconds']['pull']:8.1f} "
            f"{1000 * r['poll']['poll_s']:8.1f} {1000 * r.get('poll_labeled', {}).get('poll_s', 0):8.1f} "
            f"{1000 * r['poll']['listing_s']:10.1f} "
            f"{r['wait']['completed']:>10,} {r['responses']:>9,} {stack:9.0f} "
            f"{r['peak_rss_mib'].get('driver', 0):10.0f}"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    from argilla_setup import server

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,2000", help="comma-separated record counts")
    parser.add_argument("--labelers", type=int, default=2)
    parser.add_argument("--min-submitted", type=int, default=1)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--label-timeout", type=float, default=None, help="seconds; then proceed")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        base = Path(tmp)
        os.environ["PICKLOOP_HOME"] = str(base / "pickloop-home")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        home = base / "argilla"
        info = server.start(home, port=server.free_port())
        rows = []
        try:
            for n in sizes:
                print(f"{n:,} records ...", flush=True)
                rows.append(bench_size(n, info, home, base, args))
                print(json.dumps(rows[-1]["seconds"]), flush=True)
                if args.out:
                    args.out.write_text(json.dumps(rows, indent=2))
        finally:
            server.stop(home)
    report(rows)
    return rows


if __name__ == "__main__":
    main()
