"""The console: a real `pickloop round train`/`generate` prints one bar per phase and no library
noise (warnings, datasets/transformers bars, the Trainer's log dicts) unless `-v`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from ml_fixtures import FAST_LORA, FAST_SFT, qa_examples, tiny_model, write_jsonl  # noqa: F401

from loop.console import QUIET_ENV, quiet

ROOT = Path(__file__).resolve().parents[1]
NOISE = (
    "Warning",  # FutureWarning, UserWarning, setuptools' warnings
    "warnings.warn",
    "{'loss'",  # the Trainer's per-log dicts
    "'train_runtime'",
    "Building labels",  # datasets map bars inside TRL
    "Truncating train dataset",
    "Loading weights",  # transformers bars
    "Writing model shards",
    "Creating parquet",
)


def _pickloop(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_round_prints_one_bar_per_phase_and_no_library_noise(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    sft = {k: v for k, v in FAST_SFT.items() if k != "disable_tqdm"} | {
        "num_train_epochs": 4,
        "logging_steps": 1,
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "run": {"name": "console", "dir": str(tmp_path / "run")},
                "data": {
                    "path": str(write_jsonl(tmp_path / "data.jsonl", [e.__dict__ for e in qa_examples(4)]))
                },
                "model": {"name_or_path": str(tiny_model), "cpu_threads": 1},
                "train": {"sft": sft, "lora": FAST_LORA},
                "generate": {"k": 2, "max_new_tokens": 8},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENV and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    train = _pickloop("round", "train", str(cfg), env=env)
    assert train.returncode == 0, train.stderr
    regenerate = _pickloop("round", "regenerate", str(cfg), env=env)  # a no-op: data.regenerate is unset
    assert regenerate.returncode == 0 and "regenerate done" in regenerate.stdout, regenerate.stderr
    generate = _pickloop("round", "generate", str(cfg), env=env)
    assert generate.returncode == 0, generate.stderr
    out = train.stdout + train.stderr + generate.stdout + generate.stderr
    assert [n for n in NOISE if n in out] == []
    # The training bar ends at step/total with the latest loss; generation has its own bar.
    last = train.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("train: 100%") and "4/4" in last and "loss=" in last, train.stderr
    assert "candidates: 100%" in generate.stderr


def test_verbose_leaves_the_libraries_alone(monkeypatch) -> None:
    import warnings

    for name in QUIET_ENV:  # restored after the test, whatever quiet() sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    quiet(1)
    assert not any(name in os.environ for name in QUIET_ENV)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet(0)
        warnings.warn_explicit("library", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("ours", UserWarning, "y.py", 1, module="loop.phases.train")
    assert [str(w.message) for w in seen] == ["ours"]
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
