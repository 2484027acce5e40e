"""Run config: loading, exact error messages (file, line, YAML path, what to do), secrets, paths, hash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loop.config import (
    RunConfig,
    WaitSettings,
    config_hash,
    config_reference_markdown,
    load_config,
    parse_config,
    read_secret,
)
from loop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# Lines 1-6; tests append sections from line 7 on.
MINIMAL = """\
run:
  name: t
data:
  path: data.jsonl
model:
  name_or_path: Qwen/Qwen2.5-0.5B-Instruct
"""


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# --------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", ["demo.yaml", "qwen2.5-example.yaml"])
def test_shipped_configs_load(name: str):
    cfg = load_config(ROOT / "configs" / name)
    assert isinstance(cfg, RunConfig)
    assert cfg.generate.k >= 2


def test_demo_config_is_embedded_tiny_and_local(pickloop_home: Path):
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    assert cfg.argilla.api_url is None and cfg.publish.hub_repo is None
    assert (cfg.generate.k, cfg.argilla.min_submitted, len(cfg.argilla.labelers)) == (4, 1, 2)
    assert cfg.model.name_or_path == str(pickloop_home.resolve() / "models" / "tiny")
    assert "use_cpu" not in cfg.train.sft and cfg.train.sft["learning_rate"] == 3e-3


def test_real_model_example_is_remote_and_published():
    cfg = load_config(ROOT / "configs" / "qwen2.5-example.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"  # a Hub id stays a Hub id
    assert cfg.argilla.api_url and cfg.publish.hub_repo
    assert cfg.train.sft["bf16"] is True


# --------------------------------------------------------------------------- error messages


def test_unknown_key_names_file_line_path_and_suggests(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  k: 4\n  temprature: [0.5]\n")
    assert error_of(path) == f"{path}:9, key 'generate.temprature': unknown key; did you mean 'temperatures'?"


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "wait:\n  zzz: 1\n")
    valid = ", ".join(WaitSettings.model_fields)
    assert error_of(path) == f"{path}:8, key 'wait.zzz': unknown key; valid keys: {valid}"
    assert valid.startswith("poll_interval_s, webhooks, webhook_url, webhook_bind, timeout_s")


def test_unknown_section_suggests(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generat:\n  k: 4\n")
    assert error_of(path) == f"{path}:7, key 'generat': unknown key; did you mean 'generate'?"


def test_wrong_type(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  k: many\n")
    assert error_of(path) == (
        f"{path}:8, key 'generate.k': Input should be a valid integer, unable to parse string as an "
        "integer, got 'many'"
    )


def test_wrong_type_in_a_list_points_at_the_item(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  temperatures:\n    - 0.7\n    - hot\n")
    message = error_of(path)
    assert message.startswith(f"{path}:10, key 'generate.temperatures[1]': Input should be a valid number")
    assert message.endswith("got 'hot'")


def test_out_of_range(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  k: 1\n")
    assert error_of(path) == (
        f"{path}:8, key 'generate.k': Input should be greater than or equal to 2, got 1"
    )


def test_literal_choices_are_listed(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  strategy: restart\n")
    assert error_of(path) == (
        f"{path}:8, key 'train.strategy': Input should be 'continue', 'merge_and_stack' or 'from_base', "
        "got 'restart'"
    )


def test_section_that_is_not_a_mapping(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "wait: 5\n")
    assert error_of(path) == f"{path}:7, key 'wait': expected a mapping of keys (a section), got 5"


def test_missing_required_key_and_section(tmp_path: Path):
    path = write(tmp_path, "run:\n  seed: 1\ndata:\n  path: d.jsonl\nmodel:\n  name_or_path: m\n")
    assert error_of(path) == f"{path}:1, key 'run.name': required key is missing; add `name:` under `run`"
    path = write(tmp_path, "# a comment\nrun:\n  name: t\ndata:\n  path: d.jsonl\n")
    assert error_of(path) == f"{path}:2, key 'model': required section is missing; add a `model:` section"


def test_bad_run_name(tmp_path: Path):
    path = write(tmp_path, MINIMAL.replace("name: t", "name: my run"))
    assert error_of(path) == (
        f"{path}:2, key 'run.name': run names use letters, digits, '_', '.' and '-', start with a letter "
        "or digit and have at most 64 characters, got 'my run'"
    )


def test_several_problems_are_all_reported_in_line_order(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  k: x\nwait:\n  webhoks: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: 2 problems in the config:\n"
        f"  {path}:8, key 'generate.k': Input should be a valid integer, unable to parse string as an "
        "integer, got 'x'\n"
        f"  {path}:10, key 'wait.webhoks': unknown key; did you mean 'webhooks'?"
    )
    assert (info.value.line, info.value.key) == (8, "generate.k")
    assert len(info.value.problems) == 2


def test_yaml_syntax_error_has_a_line(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  k: [4\n")
    message = error_of(path)
    assert message.startswith(f"{path}:9: not valid YAML: ")


def test_duplicate_key(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "generate:\n  k: 4\n  k: 5\n")
    assert error_of(path) == f"{path}:9, key 'generate.k': duplicate key (first on line 8); keep one"


def test_not_a_mapping_empty_and_missing_file(tmp_path: Path):
    path = write(tmp_path, "- a\n- b\n")
    assert error_of(path) == f"{path}:1: the top level must be a mapping of sections (run, data, model, ...)"
    path = write(tmp_path, "# nothing\n")
    assert error_of(path) == f"{path}: the config is empty; start from configs/demo.yaml"
    missing = str(tmp_path / "nope.yaml")
    assert error_of(missing) == f"{missing}: no such file; write one with `pickloop config init` (or start from configs/demo.yaml)"


def test_labelers_must_cover_min_submitted(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "argilla:\n  labelers: [ann, bob]\n  min_submitted: 3\n")
    assert error_of(path) == (
        f"{path}:9, key 'argilla.min_submitted': 3 submissions per record required but only 2 labelers "
        "listed; lower `min_submitted` or add labelers"
    )
    path = write(tmp_path, MINIMAL + "argilla:\n  labelers: [ann, ann]\n")
    assert error_of(path) == f"{path}:8, key 'argilla.labelers': labelers listed twice: ann"


# --------------------------------------------------------------------------- TRL / PEFT pass-through


def test_unknown_sft_field_suggests(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  sft:\n    max_length: 128\n    learning_rat: 0.001\n")
    assert error_of(path) == (
        f"{path}:10, key 'train.sft.learning_rat': not a field of SFTConfig; did you mean 'learning_rate'?"
    )


def test_unknown_lora_field_suggests(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  lora:\n    target_module: all-linear\n")
    assert error_of(path) == (
        f"{path}:9, key 'train.lora.target_module': not a field of LoraConfig; did you mean 'target_modules'?"
    )


def test_unknown_passthrough_field_without_match_points_at_the_docs(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  lora:\n    qqqqqq: 1\n")
    assert error_of(path) == (
        f"{path}:9, key 'train.lora.qqqqqq': not a field of LoraConfig; see "
        "https://huggingface.co/docs/peft/package_reference/lora"
    )


def test_sft_field_that_pickloop_manages(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  sft:\n    output_dir: /tmp/x\n")
    assert error_of(path) == (
        f"{path}:9, key 'train.sft.output_dir': cannot be set here: pickloop trains in the round "
        "directory; remove it"
    )


def test_sft_field_with_wrong_type(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  sft:\n    num_train_epochs: lots\n")
    assert error_of(path) == (
        f"{path}:9, key 'train.sft.num_train_epochs': SFTConfig.num_train_epochs expects number, got 'lots'"
    )


def test_yaml_exponent_without_dot_becomes_a_number(tmp_path: Path):
    # YAML 1.1 reads `1e-4` as a string; SFTConfig would then fail deep inside the optimizer.
    path = write(tmp_path, MINIMAL + "train:\n  sft:\n    learning_rate: 1e-4\n  lora:\n    r: 8\n")
    cfg = load_config(path)
    assert cfg.train.sft["learning_rate"] == 1e-4 and isinstance(cfg.train.sft["learning_rate"], float)
    assert cfg.train.lora == {"r": 8}


def test_config_check_with_trl_fields_does_not_import_trl(tmp_path: Path):
    """`train.sft`/`train.lora` are checked from the snapshot of the pinned versions: config errors
    stay instant (importing TRL pulls in torch)."""
    path = write(tmp_path, MINIMAL + "train:\n  sft:\n    learning_rate: 1e-4\n  lora:\n    r: 8\n")
    code = (
        f"import sys; from loop.config import load_config; load_config({path!r}); "
        "assert not {'trl', 'peft', 'torch', 'transformers'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_passthrough_snapshot_matches_the_installed_libraries():
    from loop.config import PASSTHROUGH_SNAPSHOT, passthrough_snapshot

    stored = json.loads(PASSTHROUGH_SNAPSHOT.read_text())
    assert stored == passthrough_snapshot(), "TRL/PEFT changed: run `python -m loop.config snapshot`"


def test_importing_config_does_not_import_trl():
    code = "import sys, loop.config; assert 'trl' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("section", "key_line"),
    [
        ("argilla:\n  api_key: s3cr3t-value\n", "argilla.api_key"),
        ("publish:\n  hub-token: s3cr3t-value\n", "publish.hub-token"),
        ("train:\n  sft:\n    hub_token: s3cr3t-value\n", "train.sft.hub_token"),
        ("argilla:\n  password: s3cr3t-value\n", "argilla.password"),
    ],
)
def test_secret_keys_are_refused_without_echoing_them(tmp_path: Path, section: str, key_line: str):
    path = write(tmp_path, MINIMAL + section)
    message = error_of(path)
    line = 7 + section.count("\n") - 1
    assert message.startswith(f"{path}:{line}, key '{key_line}': secrets do not belong in the config")
    assert "ARGILLA_API_KEY" in message and "HF_TOKEN" in message and "0600" in message
    assert "s3cr3t" not in message


def test_token_like_value_is_refused(tmp_path: Path):
    token = "hf_" + "a1B2" * 9
    path = write(tmp_path, MINIMAL + f"publish:\n  hub_repo: {token}\n")
    message = error_of(path)
    assert message.startswith(f"{path}:8, key 'publish.hub_repo': secrets do not belong")
    assert "remove this value (it looks like a Hugging Face token)" in message
    assert token not in message


def test_tokenizer_token_fields_are_not_secrets(tmp_path: Path):
    path = write(tmp_path, MINIMAL + "train:\n  sft:\n    pad_token: <|pad|>\n    eos_token: <|im_end|>\n")
    assert load_config(path).train.sft["pad_token"] == "<|pad|>"


def test_read_secret_prefers_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ARGILLA_API_KEY", "from-env")
    assert read_secret("ARGILLA_API_KEY", tmp_path / "absent") == "from-env"


def test_read_secret_from_0600_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    secret = tmp_path / "token"
    secret.write_text("hf_file_secret\n")
    secret.chmod(0o600)
    assert read_secret("HF_TOKEN", secret) == "hf_file_secret"


def test_read_secret_refuses_group_readable_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    secret = tmp_path / "token"
    secret.write_text("hf_file_secret\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        read_secret("HF_TOKEN", secret)
    assert str(info.value) == (
        f"{secret}: secret file is readable by group or others (mode 0644); run `chmod 600 {secret}` "
        "or set HF_TOKEN instead"
    )
    assert "hf_file_secret" not in str(info.value)


def test_read_secret_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    assert read_secret("ARGILLA_API_KEY", required=False) is None
    with pytest.raises(ConfigError, match="set the ARGILLA_API_KEY environment variable"):
        read_secret("ARGILLA_API_KEY")
    with pytest.raises(ConfigError, match="secret file does not exist"):
        read_secret("ARGILLA_API_KEY", tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="secret file is empty"):
        read_secret("ARGILLA_API_KEY", empty)


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, pickloop_home: Path):
    folder = tmp_path / "project" / "configs"
    (folder / "models" / "tiny").mkdir(parents=True)
    text = (
        "run:\n  name: t\n  dir: ../runs/t\n"
        "data:\n  path: data/train.jsonl\n"
        "model:\n  name_or_path: models/tiny\n"
        "argilla:\n  home: ${PICKLOOP_HOME}/argilla-test\n  api_key_file: ~/.argilla-key\n"
        "publish:\n  local_dir: store\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)  # the working directory must not matter
    try:
        cfg = load_config(os.path.relpath(write(folder, text), elsewhere))
    finally:
        os.chdir(cwd)
    assert cfg.run.dir == tmp_path / "project" / "runs" / "t"
    assert cfg.run_dir() == (tmp_path / "project" / "runs" / "t").resolve()
    assert cfg.data.path == str(folder / "data" / "train.jsonl")
    assert cfg.model.name_or_path == str(folder / "models" / "tiny")  # exists: a local folder
    assert cfg.argilla.home == pickloop_home.resolve() / "argilla-test"
    assert cfg.argilla.api_key_file == Path.home() / ".argilla-key"
    assert cfg.publish.local_dir == folder / "store"


def test_hub_ids_stay_hub_ids(tmp_path: Path):
    path = write(tmp_path, MINIMAL.replace("data.jsonl", "my-org/faq"))
    cfg = load_config(path)
    assert (cfg.data.path, cfg.model.name_or_path) == ("my-org/faq", "Qwen/Qwen2.5-0.5B-Instruct")


def test_run_dir_defaults_under_pickloop_home(tmp_path: Path, pickloop_home: Path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.run_dir() == pickloop_home.resolve() / "runs" / "t"


# --------------------------------------------------------------------------- hash


def test_config_hash_is_stable_and_tracks_settings(tmp_path: Path):
    a = load_config(write(tmp_path, MINIMAL + "generate:\n  k: 4\n  top_p: 0.9\n", "a.yaml"))
    b = load_config(write(tmp_path, MINIMAL + "generate:\n  top_p: 0.9\n  k: 4\n", "b.yaml"))
    c = load_config(write(tmp_path, MINIMAL + "generate:\n  k: 5\n  top_p: 0.9\n", "c.yaml"))
    assert config_hash(a.generate) == config_hash(b.generate)  # key order does not matter
    assert config_hash(a.generate) != config_hash(c.generate)
    assert config_hash(a.train) == config_hash(c.train)  # other sections unaffected
    assert len(config_hash(a.generate)) == 64
    # Pinned: the canonical JSON of a plain mapping, so the hash survives interpreter restarts.
    canonical = b'{"a":[1.5,"x"],"b":1}'
    assert config_hash({"b": 1, "a": [1.5, "x"]}) == hashlib.sha256(canonical).hexdigest()


def test_config_hash_of_sft_changes_with_a_trl_setting():
    base = {"run": {"name": "t"}, "data": {"path": "d"}, "model": {"name_or_path": "m"}}
    one = parse_config({**base, "train": {"sft": {"learning_rate": 1e-3}}})
    two = parse_config({**base, "train": {"sft": {"learning_rate": 2e-3}}})
    assert config_hash(one.train) != config_hash(two.train)
    assert config_hash(one.train, one.model) != config_hash(one.train)
    # Models nested in lists and mappings hash as their JSON, not their repr.
    nested = config_hash([one.train, one.model], {"round": 2})
    assert nested == config_hash([one.train.model_dump(mode="json"), one.model.model_dump()], {"round": 2})
    assert nested != config_hash([two.train, two.model], {"round": 2})


# --------------------------------------------------------------------------- reference


def test_markdown_reference_lists_every_field():
    md = config_reference_markdown()
    for section, field in RunConfig.model_fields.items():
        assert f"### `{section}`" in md
        for key, sub in field.annotation.model_fields.items():
            nested = getattr(sub.annotation, "model_fields", None)  # a subsection: one row per field
            for name, f in nested.items() if nested else [(key, sub)]:
                dotted = f"{section}.{key}" + (f".{name}" if nested else "")
                row = next(line for line in md.splitlines() if line.startswith(f"| `{dotted}` |"))
                assert (f.description or "").split("`")[0].split("<")[0][:20] in row
    assert "| `generate.k` | integer (>= 2, <= 50) | `4` |" in md
    assert "| `run.name` | string | required |" in md
    assert '"continue" \\| "merge_and_stack" \\| "from_base"' in md


def test_config_commands(tmp_path: Path):
    """`pickloop config reference|check`: the reference, OK for the demo config, one clean line for a typo."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from loop.cli import cli

    ref = CliRunner().invoke(cli, ["config", "reference"], catch_exceptions=False)
    assert ref.exit_code == 0 and ref.output == config_reference_markdown()
    ok = CliRunner().invoke(cli, ["config", "check", str(ROOT / "configs" / "demo.yaml")], catch_exceptions=False)
    assert ok.exit_code == 0 and "OK (run 'demo'" in ok.output
    bad = write(tmp_path, MINIMAL + "generate:\n  kk: 4\n")
    proc = subprocess.run([sys.executable, "-m", "loop.cli", "config", "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == f"Error: {bad}:8, key 'generate.kk': unknown key; did you mean 'k'?\n"
