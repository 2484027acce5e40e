"""The wheel ships what `pickloop demo` reads: the demo config and the FAQ data, from one copy."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_demo_config_and_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("pickloop-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"loop/demo/demo.yaml", "loop/demo/python_faq.jsonl", "loop/phases/__init__.py"} <= names
    assert {"loop/seed/prompts/qa.txt", "loop/seed/prompts/conversation.txt"} <= names, "seed-data's default prompts"
    # configs/demo.yaml is the same file, not a second copy that can drift.
    assert (ROOT / "configs" / "demo.yaml").resolve() == (ROOT / "loop" / "demo" / "demo.yaml").resolve()
