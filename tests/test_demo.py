"""README command 1 end to end: `pickloop demo --simulate-labelers 2 --rounds 2` in a temp home."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from argilla_setup import server
from loop.cli import cli

pytestmark = pytest.mark.slow


def test_demo_runs_two_simulated_rounds(pickloop_home: Path) -> None:
    port = server.free_port()
    try:
        result = CliRunner().invoke(
            cli,
            ["demo", "--simulate-labelers", "2", "--rounds", "2", "--limit", "16", "--port", str(port)],
            catch_exceptions=False,
        )
    finally:
        server.stop(pickloop_home / "argilla")
    out = result.output
    assert result.exit_code == 0, out
    assert "SIMULATION: 2 simulated labelers" in out
    assert "(Labelers were SIMULATED in this run.)" in out
    assert "argilla.min_submitted 1 -> 2" in out, "the demo says it raised min_submitted"
    assert re.findall(r"round (\d+) result: data F1", out) == ["1", "2"], "one result line as each round ends"
    assert "Round 1 is ready for labelers" not in out, "no hand-off to people in a simulation"
    # The per-round table: round 0 (step-1 data) and rounds 1-2.
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| round | data F1 vs reference | model F1 vs reference |")
    assert [line.split("|")[1].strip() for line in table[1:]] == ["0", "1", "2"]

    run_dir = pickloop_home / "runs" / "demo-simulated"
    assert not (pickloop_home / "runs" / "demo").exists(), "the demo with people has a run of its own"
    report = json.loads((run_dir / "report.json").read_text())
    assert [r["round"] for r in report] == [0, 1, 2]
    assert all(sum(r["choices"].values()) == 16 for r in report[1:])
    # Simulated labelers prefer answers closer to the reference: the data must not get worse.
    assert report[2]["data_f1"] >= report[0]["data_f1"]
    png = run_dir / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # Local revisions round-1 and round-2, each a loadable dataset with provenance and a lineage card.
    from datasets import load_dataset

    store = run_dir / "revisions"
    for n in (1, 2):
        ds = load_dataset(str(store / f"round-{n}"), split="train")
        assert len(ds) == 16 and set(ds["round"]) == {n}
        assert {"choice", "annotator_count", "agreement"} <= set(ds.column_names)
        card = (store / f"round-{n}" / "README.md").read_text()
        assert "pickloop lineage" in card
    assert "simulated" in (store / "round-2" / "README.md").read_text().lower()
    # The rankings as preference data in the same revisions, exactly what pulled.json gives again.
    from loop.annotate import shuffle_key
    from loop.data import load_examples
    from loop.preferences import read_round

    pairs = load_dataset(str(store / "round-1"), "preferences", split="train")
    assert len(pairs) > 0 and set(pairs["round"]) == {1}
    assert all(p["chosen"] != p["rejected"] and p["chosen_by"] for p in pairs)
    # Labelers are published under pseudonyms (publish.labeler_names is off).
    assert "sim-labeler" not in json.dumps(pairs.to_list())
    inputs = load_examples(run_dir / "round-1" / "input.jsonl")
    rebuilt = read_round(run_dir / "round-1" / "pulled.json", inputs, 1, min_submitted=2)
    rebuilt = rebuilt.pseudonymised(shuffle_key())
    assert pairs.to_list() == rebuilt.pairs
    assert load_dataset(str(store / "round-1"), "preferences_kto", split="train").to_list() == rebuilt.kto
    stats = json.loads((run_dir / "simulated_labelers.json").read_text())
    assert set(stats) == {"sim-labeler-1", "sim-labeler-2"}
    assert all(s["submitted"] + s["discarded"] >= 16 for s in stats.values())


def test_a_demo_that_asks_about_half_the_turns(pickloop_home: Path, tmp_path: Path) -> None:
    """`select: value, budget 0.5` end to end through the real Argilla: half the turns are pushed,
    highest value first; the others are published unchanged as `auto_kept`; status says so."""
    import yaml
    from datasets import load_dataset

    from loop.demo.run import demo_config_path
    from loop.paths import RunPaths
    from loop.selection import read_selection

    cfg = yaml.safe_load(demo_config_path().read_text())
    cfg["select"] = {"strategy": "value", "budget": 0.5}
    config = tmp_path / "half.yaml"
    config.write_text(yaml.safe_dump(cfg))
    port = server.free_port()
    args = ["demo", "--config", str(config), "--simulate-labelers", "2", "--rounds", "1", "--limit", "12"]
    try:
        result = CliRunner().invoke(cli, [*args, "--port", str(port)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        run_dir = pickloop_home / "runs" / "demo-simulated"
        rd = RunPaths(run_dir).round(1)
        state = json.loads((run_dir / "state.json").read_text())["rounds"]["1"]
        assert state["push"]["summary"]["records"] == 6
        assert state["aggregate"]["summary"]["choices"]["auto_kept"] == 6
        asked = sorted((t for t in read_selection(rd.selection) if t.selected), key=lambda t: t.order)
        values = [t.value for t in asked]
        assert len(asked) == 6 and values == sorted(values, reverse=True), "highest value first"
        skipped = [t for t in read_selection(rd.selection) if not t.selected]
        assert min(values) >= max(t.value for t in skipped)
        ds = load_dataset(str(run_dir / "revisions" / "round-1"), split="train")
        assert len(ds) == 12 and ds["choice"].count("auto_kept") == 6
        cfg["run"]["name"] = "demo-simulated"  # the name the simulated demo runs under
        config.write_text(yaml.safe_dump(cfg))
        status = CliRunner().invoke(cli, ["status", "--offline", str(config)], catch_exceptions=False).output
        assert "6 asked, 6 auto-kept (0 verified)" in status
    finally:
        server.stop(pickloop_home / "argilla")


def test_a_demo_that_ends_with_a_simulated_evaluation(pickloop_home: Path) -> None:
    port = server.free_port()
    try:
        result = CliRunner().invoke(
            cli,
            [
                "demo",
                "--simulate-labelers",
                "2",
                "--rounds",
                "1",
                "--limit",
                "20",
                "--eval",
                "--port",
                str(port),
            ],
            catch_exceptions=False,
        )
    finally:
        server.stop(pickloop_home / "argilla")
    out = result.output
    assert result.exit_code == 0, out
    assert "SIMULATION: 2 simulated judges compare the answers of base, round-1 blind" in out
    assert "(Labelers were SIMULATED in this run, and so were the judges.)" in out
    assert "round-1: strength" in out and "vs base" in out
    run_dir = pickloop_home / "runs" / "demo-eval-simulated"
    held = [json.loads(line)["id"] for line in (run_dir / "eval" / "holdout.jsonl").read_text().splitlines()]
    assert len(held) == 2  # 10% of 20
    from datasets import load_dataset

    published = load_dataset(str(run_dir / "revisions" / "round-1"), split="train")
    assert len(published) == 18 and not set(held) & set(published["id"])
    report = json.loads((run_dir / "eval" / "demo" / "report.json").read_text())
    assert report["simulated"] is True and report["records"] == 2 and report["judgements"] == 4
    assert "SIMULATION" in (run_dir / "eval" / "demo" / "report.md").read_text()
    # The evaluation came after the last round: that round's card shows it, announced as a simulation.
    card = (run_dir / "revisions" / "round-1" / "README.md").read_text()
    assert "Evaluated after round 1" in card and "simulated judges (a SIMULATION)" in card
    assert "eval demo: added to the card of round-1" in out
