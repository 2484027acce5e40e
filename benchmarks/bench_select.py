"""Knowledge filtering on the demo: labels spent against what the data and the model gain.

    python benchmarks/bench_select.py                       # every variant, 3 rounds (~35 min on 2 cores)
    python benchmarks/bench_select.py --rounds 2 --limit 40 # a quick look
    python benchmarks/bench_select.py --only all,value-50

Each variant runs the unattended demo (2 simulated labelers, same seeds, its own temp home and
Argilla) with the packaged demo config plus its own `select` / `train.replay` settings:
- all: every turn, every round (the default); random-50: a seeded half; value-50 / value-25: the
  highest `value` half / quarter; value-50-skip / all-skip: the same with `select.skip_verified`;
  replay-none / replay-hard-25: rounds 2+ train on the changed examples only / plus the 25% unchanged
  ones with the highest IFD.
- control: no labeling at all: the same training rounds on the step-1 data every round, so the table
  separates what labeling adds from what more training adds.
Printed per variant and round: records labelers were asked (labels), dataset token-F1 vs the
reference, the model's greedy token-F1 vs the reference, and the ROC AUC of the `value` score for
"this turn's current answer is wrong" (token-F1 vs the reference below 0.99; the demo knows its
references, the method does not). The goal (issue #11): reach the final dataset F1 of `all` within
0.01 with at most half of its labels, and beat `random` at the same budget.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

VARIANTS: dict[str, dict] = {
    "all": {},
    "random-50": {"select": {"strategy": "random", "budget": 0.5}},
    "value-50": {"select": {"strategy": "value", "budget": 0.5}},
    "value-25": {"select": {"strategy": "value", "budget": 0.25}},
    "value-50-skip": {"select": {"strategy": "value", "budget": 0.5, "skip_verified": True}},
    "all-skip": {"select": {"skip_verified": True}},
    "replay-none": {"train": {"replay": {"mode": "none"}}},
    "replay-hard-25": {"train": {"replay": {"mode": "hard", "fraction": 0.25}}},
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def auc(scores: list[float], wrong: list[bool]) -> float | None:
    """P(a wrong answer scores above a right one), ties half (Mann-Whitney)."""
    pos = [s for s, w in zip(scores, wrong, strict=True) if w]
    neg = [s for s, w in zip(scores, wrong, strict=True) if not w]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def value_auc(run_dir: Path, n: int, references: dict[str, str], weights: dict) -> float | None:
    from loop.data import load_examples
    from loop.paths import RunPaths
    from loop.phases.score import load_scores
    from loop.selection import values
    from loop.state import RunState
    from loop.textsim import token_f1

    paths = RunPaths(run_dir).round(n)
    if not paths.scores.exists():
        return None
    scores = load_scores(paths.scores)
    source = RunPaths(run_dir).round(1).input if n == 1 else RunState.load(run_dir).round_output(n - 1)
    current = {ex.id: ex.messages[-1]["content"] for ex in load_examples(source)}
    kept = [s for s in scores if s.example_id in references]
    wrong = [token_f1(current[s.example_id], references[s.example_id]) < 0.99 for s in kept]
    return auc(values(kept, weights), wrong)


def run_variant(name: str, rounds: int, limit: int | None) -> dict:
    from argilla_setup import server
    from loop.config import load_config
    from loop.demo.run import demo_config_path, run_demo
    from loop.state import RunState

    home = Path(tempfile.mkdtemp(prefix=f"bench-select-{name}-"))
    os.environ["PICKLOOP_HOME"] = str(home)
    cfg = _merge(yaml.safe_load(demo_config_path().read_text()), VARIANTS[name])
    path = home / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    started = time.monotonic()
    try:
        result = run_demo(
            config_path=path,
            rounds=rounds,
            simulate_labelers=2,
            limit=limit,
            port=server.free_port(),
            report=lambda m: None,
            progress=False,
        )
    finally:
        server.stop(home / "argilla")
    state = RunState.load(result.run_dir)
    references = json.loads((home / "demo" / "references.json").read_text())
    weights = load_config(path).select.weights
    rows = []
    for row in result.rows:
        n = row.round
        push = state.record(n, "push") if n else None
        rows.append(
            {
                "round": n,
                "labels": push.summary.get("records") if push else None,
                "data_f1": row.data_f1,
                "model_f1": row.model_f1,
                "value_auc": value_auc(result.run_dir, n, references, weights) if n else None,
            }
        )
    return {"wall_s": time.monotonic() - started, "rows": rows}


def run_control(rounds: int, limit: int | None) -> dict:
    """The demo's training rounds on the step-1 data every round: no labeling at all."""
    from loop.config import load_config
    from loop.demo.data import faq_path, load_demo_data
    from loop.demo.report import dataset_f1, greedy_f1
    from loop.demo.run import demo_config_path
    from loop.demo.tiny_model import build_from_data
    from loop.phases.generate import generate_candidates
    from loop.phases.train import train_round

    home = Path(tempfile.mkdtemp(prefix="bench-select-control-"))
    os.environ["PICKLOOP_HOME"] = str(home)
    cfg = load_config(demo_config_path())
    import torch

    torch.set_num_threads(cfg.model.cpu_threads or torch.get_num_threads())
    demo = load_demo_data(fraction=0.4, seed=cfg.run.seed, limit=limit)
    tiny = Path(cfg.model.name_or_path)
    build_from_data(faq_path(), tiny)
    started = time.monotonic()
    rows = [
        {
            "round": 0,
            "labels": None,
            "data_f1": dataset_f1(demo.examples, demo.references),
            "model_f1": None,
            "value_auc": None,
        }
    ]
    previous = None
    for n in range(1, rounds + 1):
        out = home / f"round-{n}"
        result = train_round(
            demo.examples,
            cfg.model,
            cfg.train,
            out / "model",
            previous=previous,
            seed=cfg.run.seed + n,
            progress=False,
        )
        previous = result.model
        turns = generate_candidates(
            demo.examples,
            out / "model",
            cfg.generate,
            out / "candidates.parquet",
            seed=cfg.run.seed + n,
            model_settings=cfg.model,
            progress=False,
            max_length=cfg.train.sft.get("max_length"),
        )
        rows.append(
            {
                "round": n,
                "labels": 0,
                "data_f1": rows[0]["data_f1"],
                "model_f1": greedy_f1(turns, demo.references),
                "value_auc": None,
            }
        )
    return {"wall_s": time.monotonic() - started, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N FAQ entries.")
    parser.add_argument("--only", help="Comma-separated variants (and/or control).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    a = parser.parse_args()
    names = a.only.split(",") if a.only else [*VARIANTS, "control"]
    results = {}
    for name in names:
        results[name] = (
            run_control(a.rounds, a.limit) if name == "control" else run_variant(name, a.rounds, a.limit)
        )
        print(f"{name}: {results[name]['wall_s']:.0f} s", flush=True)

    def fmt(v, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    print(f"\nknowledge filtering on the demo: {a.rounds} round(s), limit {a.limit}, {os.cpu_count()} CPU(s)")
    print(
        "| variant | labels per round (total) | data F1 per round | model F1 per round | value AUC per round |"
    )
    print("|---|---|---|---|---|")
    for name, r in results.items():
        rows = r["rows"][1:]
        labels = [x["labels"] for x in rows]
        total = sum(x or 0 for x in labels)
        print(
            f"| {name} | {' / '.join(fmt(x) for x in labels)} ({total}) | "
            f"{fmt(r['rows'][0]['data_f1'])} -> {' / '.join(fmt(x['data_f1']) for x in rows)} | "
            f"{' / '.join(fmt(x['model_f1']) for x in rows)} | {' / '.join(fmt(x['value_auc'], 2) for x in rows)} |"
        )
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
