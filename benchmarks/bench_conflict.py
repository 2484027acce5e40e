"""What `aggregate.on_conflict` does to the data when labelers are noisy: keep_current vs best vs review.

    pickloop demo --simulate-labelers 2            # once, for the rounds' candidates (or any finished demo run)
    python benchmarks/bench_conflict.py RUN_DIR    # e.g. $PICKLOOP_HOME/runs/demo-simulated
    python benchmarks/bench_conflict.py RUN_DIR --noise 0.2 --seeds 20

A short variant of the demo benchmark: no training, no Argilla. For every round of a finished demo
run it takes the records labelers were shown (`push_plan.jsonl`: the current answer and the model's
candidates, shuffled) and simulates, per seed, two labelers whose rankings are `--noise` noisy (with
that probability a ranking is a random order; otherwise it is by token F1 against the reference plus
the demo's small Gaussian noise, as `loop.demo.simulate` ranks; no edits, no discards) and one
reviewer with the same noise (`--reviewer-noise` for a more or less careful one). Each record is then decided by aggregate's own rules
(`loop.phases.aggregate.decide`) under each mode, the `review` modes through the review phase's own
rule (`loop.phases.review.review_decision`): one more labeler (a third vote) or an owner (the
reviewer's first place is final). Printed per round: the dataset's token F1 against the reference
before the round and after it under each mode (mean over seeds, with the spread), the conflicts and
how many answers each mode changed. It measures the rule on one round's fixed candidates; what it
compounds to through training would need full demo runs per mode.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

MODES = ("keep_current", "best", "review-labeler", "review-owner")


def noisy_ranking(slots: dict[str, str], reference: str, rng: random.Random, noise: float) -> tuple:
    """A labeler's ranking: with probability `noise` a random order, else by similarity (as the demo)."""
    from loop.demo.simulate import LabelerStyle, decide

    if rng.random() < noise:
        order = list(slots)
        rng.shuffle(order)
        return tuple((s, i) for i, s in enumerate(order, 1))
    _, values, _, _ = decide(slots, reference, rng, LabelerStyle(edit_rate=0.0, discard_rate=0.0))
    return tuple((v["value"], v["rank"]) for v in values["ranking"]["value"])


def run_round(
    round_dir: Path, references: dict[str, str], noise: float, seed: int, reviewer_noise: float | None = None
) -> dict[str, dict]:
    from loop import annotate
    from loop.phases.aggregate import ConflictRule, RecordCandidates, Response, decide
    from loop.phases.review import review_decision
    from loop.textsim import token_f1

    plan = [p for p in annotate.read_plan(round_dir) if p.example_id in references]
    out = {m: {"f1": [], "changed": 0} for m in ("before", *MODES)}
    conflicts = 0
    for rec in plan:
        ref = references[rec.example_id]
        slots = {s: c.text for s, c in rec.slots.items()}
        record = RecordCandidates(
            rec.external_id, rec.example_id, 1, slots, slots[rec.original_slot], rec.original_slot
        )
        rng = random.Random(f"{seed}:{rec.external_id}")
        votes = [Response(name, noisy_ranking(slots, ref, rng, noise)) for name in ("a", "b")]
        reviewer = Response(
            "r", noisy_ranking(slots, ref, rng, noise if reviewer_noise is None else reviewer_noise)
        )
        out["before"]["f1"].append(token_f1(record.current, ref))
        base = decide(record, votes, min_submitted=2, conflict=ConflictRule(mode="review"))
        conflicts += base.conflict
        answers = {
            "keep_current": decide(record, votes, min_submitted=2, conflict=ConflictRule()),
            "best": decide(record, votes, min_submitted=2, conflict=ConflictRule(mode="best")),
            "review-labeler": review_decision(record, votes, [reviewer], set(), base),
            "review-owner": review_decision(record, votes, [reviewer], {"r"}, base),
        }
        for mode, d in answers.items():
            out[mode]["f1"].append(token_f1(d.answer, ref))
            out[mode]["changed"] += d.answer != record.current
    return {m: {"f1": statistics.fmean(v["f1"]), "changed": v["changed"]} for m, v in out.items()} | {
        "conflicts": {"n": conflicts, "records": len(plan)}
    }


def main() -> None:
    import json

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="A finished demo run (runs/<name> under PICKLOOP_HOME).")
    parser.add_argument(
        "--references", type=Path, help="Default: <home>/demo/references.json beside the run."
    )
    parser.add_argument("--noise", type=float, default=0.2, help="Probability a ranking is a random order.")
    parser.add_argument("--reviewer-noise", type=float, default=None, help="Default: --noise (a peer).")
    parser.add_argument("--seeds", type=int, default=20)
    a = parser.parse_args()
    refs_path = a.references or a.run_dir.parent.parent / "demo" / "references.json"
    references = json.loads(refs_path.read_text())
    rounds = sorted(
        int(p.name.split("-")[1]) for p in a.run_dir.glob("round-*") if (p / "push_plan.jsonl").exists()
    )
    reviewer = a.noise if a.reviewer_noise is None else a.reviewer_noise
    print(
        f"on_conflict with {a.noise:.0%}-noisy simulated labelers, a {reviewer:.0%}-noisy reviewer: "
        f"{a.run_dir}, {a.seeds} seeds"
    )
    print(
        "| round | records | conflicts | F1 before | " + " | ".join(f"F1 {m} (changed)" for m in MODES) + " |"
    )
    print("|---|---|---|---|" + "---|" * len(MODES))
    for n in rounds:
        runs = [
            run_round(a.run_dir / f"round-{n}", references, a.noise, s, a.reviewer_noise)
            for s in range(a.seeds)
        ]

        def cell(mode: str, runs: list[dict] = runs) -> str:
            f1 = [r[mode]["f1"] for r in runs]
            changed = statistics.fmean(r[mode]["changed"] for r in runs)
            spread = statistics.stdev(f1) if len(f1) > 1 else 0.0
            return f"{statistics.fmean(f1):.4f} ± {spread:.4f} ({changed:.1f})"

        conflicts = statistics.fmean(r["conflicts"]["n"] for r in runs)
        print(
            f"| {n} | {runs[0]['conflicts']['records']} | {conflicts:.1f} | "
            f"{statistics.fmean(r['before']['f1'] for r in runs):.4f} | "
            + " | ".join(cell(m) for m in MODES)
            + " |"
        )


if __name__ == "__main__":
    main()
