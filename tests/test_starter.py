"""`pickloop config init`: the starter config it writes passes `config check`, and it never overwrites."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from loop.cli import cli
from loop.config import load_config
from loop.errors import ConfigError
from loop.starter import StarterExistsError


def _step1(folder: Path) -> Path:
    path = folder / "step1.jsonl"
    path.write_text(json.dumps({"question": "What is a list?", "answer": "A mutable sequence."}) + "\n")
    return path


def test_config_init_writes_a_config_that_config_check_accepts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _step1(tmp_path)
    runner = CliRunner()
    init = runner.invoke(
        cli,
        ["config", "init", "configs/my-run.yaml", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--data", "step1.jsonl"],
        catch_exceptions=False,
    )
    assert init.exit_code == 0, init.output
    written = tmp_path / "configs" / "my-run.yaml"
    assert written.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "configs").stat().st_mode & 0o777 == 0o700
    check = runner.invoke(cli, ["config", "check", str(written)], catch_exceptions=False)
    assert check.exit_code == 0 and "OK (run 'my-run', 3 rounds" in check.output
    cfg = load_config(written)
    # Written relative to the config's folder, so it resolves to the same file from anywhere.
    assert "path: ../step1.jsonl" in written.read_text()
    assert cfg.data.path == str(tmp_path / "step1.jsonl")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"  # a Hub id stays a Hub id
    assert "# " in written.read_text() and "pickloop config reference" in written.read_text()


def test_config_init_local_model_and_options(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _step1(tmp_path)
    (tmp_path / "tiny").mkdir()
    result = CliRunner().invoke(
        cli,
        ["config", "init", "run.yaml", "--model", "tiny", "--data", "step1.jsonl", "--name", "faq-1", "--rounds", "5"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    cfg = load_config(tmp_path / "run.yaml")
    assert (cfg.run.name, cfg.run.max_rounds) == ("faq-1", 5)
    assert cfg.model.name_or_path == str(tmp_path / "tiny")


def test_config_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "my-run.yaml"
    target.write_text("run: {name: mine}\n")
    result = CliRunner().invoke(cli, ["config", "init", str(target), "--model", "m/x", "--data", "d.jsonl"])
    assert isinstance(result.exception, StarterExistsError)
    assert target.read_text() == "run: {name: mine}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "loop.cli", "config", "init", str(target), "--model", "m/x", "--data", "d.jsonl"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"Error: {target}: already exists; config init never overwrites, pick another file name\n"
    assert target.read_text() == "run: {name: mine}\n"


def test_config_init_bad_name_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "run.yaml"
    result = CliRunner().invoke(
        cli, ["config", "init", str(target), "--model", "m/x", "--data", "d.jsonl", "--name", "bad name"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "key 'run.name'" in str(result.exception) and "'bad name'" in str(result.exception)
    assert not target.parent.exists()


def test_config_init_help() -> None:
    result = CliRunner().invoke(cli, ["config", "init", "--help"], catch_exceptions=False)
    assert result.exit_code == 0 and "never overwrites" in result.output
