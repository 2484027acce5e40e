"""`benchmarks/bench_scale.py` at a tiny size: the phases run end to end on its own embedded stack,
the labelers finish, and no wait poll listed the records (seconds; the numbers are not judged)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.argilla  # starts its own embedded stack (about 15 s)
def test_tiny_scale_bench_runs_every_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    out = tmp_path / "scale.json"
    rows = _load().main(["--sizes", "20,40", "--poll-interval", "0.5", "--out", str(out)])
    assert json.loads(out.read_text()) == rows
    for row, n in zip(rows, (20, 40), strict=True):
        assert row["records"] == n and row["wait"]["completed"] == n and row["responses"] >= n
        assert set(row["ms_per_record"]) == {"push", "wait", "pull", "aggregate", "review", "publish"}
        assert row["poll"]["tallies"] == 0 and row["poll"]["poll_s"] > 0 and row["peak_rss_mib"]["driver"] > 0
