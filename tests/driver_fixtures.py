"""A small run config for driver tests: tiny model, 6 short FAQ pairs, the shared embedded Argilla."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from ml_fixtures import FAST_LORA, FAST_SFT, qa_examples, write_jsonl


def make_config(tmp_path: Path, tiny: Path, api_url: str, **overrides) -> Path:
    tag = uuid.uuid4().hex[:6]
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": ex.id, "question": ex.messages[0]["content"], "answer": ex.messages[1]["content"]}
            for ex in qa_examples(6)
        ],
    )
    cfg = {
        "run": {"name": f"e2e-{tag}", "dir": str(tmp_path / "run"), "seed": 0, "max_rounds": 2},
        "data": {"path": str(data)},
        "model": {"name_or_path": str(tiny), "dtype": "float32"},
        "train": {"strategy": "continue", "sft": FAST_SFT, "lora": FAST_LORA},
        "generate": {"k": 3, "temperatures": [1.2, 1.6], "max_new_tokens": 24, "batch_size": 16},
        "argilla": {
            "api_url": api_url,
            "workspace": f"ws-{tag}",
            "labelers": [f"ann-a-{tag}", f"ann-b-{tag}"],
            "min_submitted": 1,
        },
        "wait": {"poll_interval_s": 0.2, "webhooks": True, "timeout_s": 120},
    }
    for section, values in overrides.items():
        cfg[section].update(values)
    path = tmp_path / "pickloop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
