"""benchmarks/gpu_check.py --tiny: the device check's code runs on CPU and writes sane numbers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.train  # trains the tiny configuration (seconds)
def test_tiny_gpu_check_writes_positive_numbers(tmp_path: Path) -> None:
    gpu_check = _load()
    gpu_check.main(["--tiny", "--out", str(tmp_path), "--bandwidth", "0.02", "--peak-tflops", "0.1"])
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["tiny"] is True and result["device"]["bandwidth_bytes_s"] == pytest.approx(2e10)
    gen = result["generate"]
    assert gen["model"]["parameters"] > 0 and gen["model"]["kv_bytes_per_token"] > 0
    runs = [gen["naive"]]
    for rows in gpu_check.TINY.rows:
        batch = gen[f"rows_{rows}"]
        assert set(batch) == {"pickloop", "hf_generate_dynamic", "hf_generate_static"}
        assert batch["pickloop"]["rows"] == rows
        runs += batch.values()
    for run in runs:
        for key in ("tokens", "tokens_per_s", "ms_per_step", "pct_of_bandwidth_bound", "peak_memory_gib"):
            assert run[key] > 0, key
    expected = gpu_check.TINY.questions * gpu_check.TINY.k * gpu_check.TINY.max_new_tokens
    assert gen[f"rows_{gpu_check.TINY.rows[0]}"]["hf_generate_dynamic"]["tokens"] <= expected
    assert result["train"]["pickloop_batch_tokens"]["batch_tokens"] == gpu_check.TINY.train_batch_tokens
    for name in ("pickloop", "pickloop_batch_tokens", "trl_baseline"):
        train = result["train"][name]
        assert train["examples"] == gpu_check.TINY.train_examples
        for key in ("tokens", "tokens_per_s", "s_per_step", "mfu_pct", "peak_memory_gib"):
            assert train[key] > 0, key
    assert set(result["ratios"]) >= {
        "train_pickloop_batch_tokens_vs_trl_baseline",
        f"generate_rows_{gpu_check.TINY.rows[-1]}_pickloop_vs_naive",
    }
    assert all(v > 0 for v in result["ratios"].values())


def test_device_table_knows_the_h200() -> None:
    gpu_check = _load()
    bandwidth, tflops = next((bw, fl) for key, bw, fl in gpu_check.KNOWN_DEVICES if key in "NVIDIA H200")
    assert (bandwidth, tflops) == (4.8, 989.0)


def test_a_failing_measurement_is_recorded_and_the_ratios_skip_it() -> None:
    gpu_check = _load()

    def broken() -> dict:
        raise RuntimeError("CUDA graphs failed")

    failed = gpu_check._guarded(broken)
    assert failed == {"error": "RuntimeError: CUDA graphs failed"}
    result = {"generate": {"naive": {"tokens_per_s": 10.0}, "rows_8": {"pickloop": {"tokens_per_s": 50.0}}}}
    result["generate"]["rows_8"]["pickloop_compiled"] = failed
    assert gpu_check.ratios(result) == {"generate_rows_8_pickloop_vs_naive": 5.0}
