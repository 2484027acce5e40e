"""The run config: one YAML file, one pydantic model per step of the round.

Unknown keys and wrong types are errors naming the YAML path. Secrets never live here: the Argilla
API key and the HF token come from the environment (`ARGILLA_API_KEY`, `HF_TOKEN`) or 0600 files.
TRL/PEFT settings pass through to `SFTConfig`/`LoraConfig` (`train.sft`, `train.lora`) and are
checked against those classes' fields instead of being re-declared here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSettings(Section):
    name: str = Field(
        description="Run name; names the run directory and the Argilla datasets.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    )
    dir: Path | None = Field(None, description="Run directory (default: $PICKLOOP_HOME/runs/<name>).")
    seed: int = Field(0, description="Seed for training, sampling and candidate shuffling.")
    max_rounds: int = Field(3, ge=1, description="Rounds to run before `pickloop run` stops.")


class DataSettings(Section):
    path: str = Field(
        description="JSONL file, local HF dataset folder, or Hub dataset id with the step-1 QA data."
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) when `path` is a Hub id."
    )
    split: str = Field("train", description="Split to read from an HF dataset.")


class ModelSettings(Section):
    name_or_path: str = Field(description="Base causal LM: a local folder or a Hub model id.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; float32 on CPU."
    )
    trust_remote_code: bool = Field(False, description="Passed to `from_pretrained`.")


class TrainSettings(Section):
    strategy: Literal["continue", "merge_and_stack", "from_base"] = Field(
        "continue",
        description="How round n+1 starts: keep training the adapter, merge it and stack a fresh LoRA, or start from the base.",
    )
    sft: dict[str, Any] = Field(
        default_factory=dict, description="Fields passed to TRL `SFTConfig` (checked against its fields)."
    )
    lora: dict[str, Any] = Field(
        default_factory=dict, description="Fields passed to PEFT `LoraConfig` (checked against its fields)."
    )


class GenerateSettings(Section):
    k: int = Field(
        4, ge=2, le=50, description="Candidates per assistant turn (a greedy one plus sampled ones)."
    )
    temperatures: list[float] = Field(
        [0.7, 1.0], description="Sampling temperatures, cycled over the sampled candidates."
    )
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling for sampled candidates.")
    max_new_tokens: int = Field(256, ge=1, description="Longest candidate, in tokens.")
    batch_size: int = Field(32, ge=1, description="Questions per `generate` call.")
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="vLLM needs a GPU machine with vllm installed."
    )


class ArgillaSettings(Section):
    api_url: str | None = Field(
        None, description="Existing Argilla deployment; empty means the embedded server."
    )
    home: Path | None = Field(None, description="Embedded server home (default: $PICKLOOP_HOME/argilla).")
    workspace: str = Field("pickloop", description="Workspace that holds the round datasets.")
    labelers: list[str] = Field(
        default_factory=list, description="Annotator usernames added to the workspace."
    )
    min_submitted: int = Field(1, ge=1, description="Submitted responses that make a record `completed`.")
    edit_question: bool = Field(True, description="Offer a 'write a better answer' text question.")
    none_acceptable: bool = Field(True, description="Offer a 'none acceptable' label.")
    suggest_model_choice: bool = Field(
        False, description="Pre-fill the model's preferred candidate (off: avoids anchoring)."
    )


class WaitSettings(Section):
    poll_interval_s: float = Field(10.0, gt=0, description="Seconds between progress polls.")
    webhooks: bool = Field(True, description="Listen for Argilla `record.completed` webhooks when reachable.")
    timeout_s: float | None = Field(
        None, gt=0, description="Give up waiting after this long (none: wait forever)."
    )
    min_completed_fraction: float = Field(
        1.0, gt=0, le=1, description="Fraction of completed records that ends the wait."
    )


class AggregateSettings(Section):
    method: Literal["borda"] = Field("borda", description="Rank aggregation across annotators.")


class PublishSettings(Section):
    hub_repo: str | None = Field(None, description="Hub dataset repo id; empty publishes to the local store.")
    private: bool = Field(True, description="Create the Hub repo private.")
    local_dir: Path | None = Field(None, description="Local revision store (default: <run dir>/revisions).")


class RunConfig(Section):
    run: RunSettings
    data: DataSettings
    model: ModelSettings
    train: TrainSettings = Field(default_factory=TrainSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    argilla: ArgillaSettings = Field(default_factory=ArgillaSettings)
    wait: WaitSettings = Field(default_factory=WaitSettings)
    aggregate: AggregateSettings = Field(default_factory=AggregateSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
