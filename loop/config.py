"""The run config: one YAML file, one pydantic model per step of the round.

Unknown keys and wrong types are errors naming the YAML path. Secrets never live here: the Argilla
API key and the HF token come from the environment (`ARGILLA_API_KEY`, `HF_TOKEN`) or 0600 files.
TRL/PEFT settings pass through to `SFTConfig`/`LoraConfig` (`train.sft`, `train.lora`) and are
checked against those classes' fields instead of being re-declared here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, to_jsonable_python

from loop import paths
from loop.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSettings(Section):
    """The run: its name, directory, seed and how many rounds `pickloop run` does."""

    name: str = Field(
        description="Run name; names the run directory and the Argilla datasets.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    )
    dir: Path | None = Field(None, description="Run directory (default: $PICKLOOP_HOME/runs/<name>).")
    seed: int = Field(0, ge=0, description="Seed for training, sampling and candidate shuffling.")
    max_rounds: int = Field(3, ge=1, description="Rounds to run before `pickloop run` stops.")


class RegenerateSettings(Section):
    """Self-Evolution's per-round data: in each round from `from_round` on, the round's freshly trained
    model writes new question-answer pairs from the same documents `pickloop seed-data` used; they
    join the round's dataset (candidates, labeling, the published revision) and the next round trains
    on them. Chunking, prompts, dedup and grounding are seed-data's (`loop/seed/`)."""

    docs: list[str] = Field(
        min_length=1,
        description="Documents: files or folders of Markdown, text, HTML, PDF (or HF datasets with `text_column`).",
    )
    text_column: str | None = Field(None, description="`docs` are HF datasets; each row's text column is a document.")
    from_round: int = Field(2, ge=1, description="First round that regenerates (round 1 trains on the seed data).")
    pairs_per_chunk: int = Field(2, ge=1, le=50, description="Question-answer pairs asked per chunk.")
    chunk_tokens: int = Field(512, ge=16, description="Token budget of a chunk (the round model's tokenizer).")
    overlap_tokens: int = Field(64, ge=0, description="Tokens a chunk repeats from the previous one.")
    max_new_tokens: int = Field(512, ge=1, description="Longest completion.")
    batch_size: int = Field(8, ge=1, description="Chunks decoded together.")
    prompt_file: Path | None = Field(None, description="Prompt template (default: loop/seed/prompts/qa.txt).")
    dedup_threshold: float = Field(
        0.85, ge=0, le=1, description="Token F1 at which a new question duplicates one in the dataset or another new one."
    )
    grounding_threshold: float = Field(0.5, ge=0, le=1, description="Answers below it are flagged `ungrounded`.")
    drop_ungrounded: bool = Field(True, description="Leave flagged answers out of the round's dataset.")


class DataSettings(Section):
    """The step-1 QA data: JSONL or an HF dataset, single- or multi-turn."""

    path: str = Field(
        description="JSONL file, local HF dataset folder, or Hub dataset id with the step-1 QA data."
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) when `path` is a Hub id."
    )
    split: str = Field("train", description="Split to read from an HF dataset.")
    regenerate: RegenerateSettings | None = Field(
        None, description="New pairs from documents in the rounds after the first (docs: seed-data.md); off when unset."
    )


class ModelSettings(Section):
    """The base causal LM the LoRA adapters are trained on."""

    name_or_path: str = Field(description="Base causal LM: a local folder or a Hub model id.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; float32 on CPU."
    )
    trust_remote_code: bool = Field(False, description="Passed to `from_pretrained`.")
    attn_implementation: str | None = Field(
        None,
        description=(
            "Passed to `from_pretrained` (none: transformers' default, SDPA). flash_attention_2 (with "
            "flash-attn installed) trains the packed rows of train.batch_tokens without the block mask "
            "SDPA needs, whose cost grows with the square of the row."
        ),
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads when running on CPU (none: torch's default). 1 is often fastest for small "
        "models on a small machine shared with the Argilla server: idle threads spin-wait for busy cores.",
    )


REPLAY_SCORERS = ("round", "base")


class ReplaySettings(Section):
    """Replay (Self-Evolution): in a round that continues from the previous round's model, train on
    the examples that changed plus a selection of the unchanged ones, which that model was already
    trained on (the pool). Round 1 and strategy from_base train on everything. Definitions and the
    choice rules: `loop/replay.py`.
    """

    mode: Literal["all", "none", "hard", "easy", "even", "random"] = Field(
        "all",
        description=(
            "all: train on every example (no selection); none: only the changed ones; hard: plus the "
            "unchanged ones with the highest IFD; easy: the lowest IFD; even: evenly spaced over the pool "
            "sorted by IFD; random: a sample seeded by run.seed + round."
        ),
    )
    k: int | None = Field(
        None, ge=1, description="Unchanged examples to replay (more than the pool replays it all, with a warning)."
    )
    fraction: float | None = Field(
        None, gt=0, le=1, description="Fraction of the pool to replay (rounded up); instead of `k`."
    )
    scorer: str = Field(
        "round",
        description=(
            "Model whose IFD orders the pool: round (the previous round's model; its scores.parquet "
            "already holds the pooled examples' IFD), base (`model.name_or_path`), or a path / Hub id "
            "of a small separate scorer (as in Superfiltering; same chat template expected)."
        ),
    )

    @model_validator(mode="after")
    def _count_for_the_mode(self) -> ReplaySettings:
        if self.k is not None and self.fraction is not None:
            raise _custom(("fraction",), "give either k (a count) or fraction, not both")
        if self.mode in ("hard", "easy", "even", "random") and self.k is None and self.fraction is None:
            raise _custom(("mode",), f"mode {self.mode} needs k (a count) or fraction (of the pool)")
        if self.mode in ("all", "none") and (self.k is not None or self.fraction is not None):
            raise _custom(
                ("mode",), f"mode {self.mode} takes no k/fraction: drop them, or pick hard/easy/even/random"
            )
        if not self.scorer.strip():
            raise _custom(("scorer",), "round, base, or a path / Hub id of a scorer model")
        return self


class TrainSettings(Section):
    """TRL SFT + PEFT LoRA training, and how one round's adapter carries into the next."""

    strategy: Literal["continue", "merge_and_stack", "from_base"] = Field(
        "continue",
        description="How round n+1 starts: keep training the adapter, merge it and stack a fresh LoRA, or start from the base.",
    )
    sft: dict[str, Any] = Field(
        default_factory=dict, description="Fields passed to TRL `SFTConfig` (checked against its fields)."
    )
    sft_later_rounds: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "`SFTConfig` fields that override `sft` in rounds that start from the previous round's model "
            "(strategy continue or merge_and_stack), e.g. fewer epochs: that model already knows every "
            "answer the labelers kept, so later rounds only need to learn what changed."
        ),
    )
    lora: dict[str, Any] = Field(
        default_factory=dict, description="Fields passed to PEFT `LoraConfig` (checked against its fields)."
    )
    replay: ReplaySettings = Field(
        default_factory=ReplaySettings, description="Earlier rounds' versions replayed in training (`train.replay.*`)."
    )
    batch_tokens: int | None = Field(
        None,
        ge=16,
        description=(
            "Token budget of one training step per device, instead of a count of padded examples: examples "
            "are packed (TRL packing, best-fit decreasing, padding-free with position ids) into one row of at "
            "most this many tokens per step; conversations are still windowed to sft.max_length. Fewer, "
            "fuller steps for a GPU (try 4096-16384, and a learning rate for the larger batch); on CPU it "
            "is slower (SDPA masks a packed row at quadratic cost). null: sft.per_device_train_batch_size "
            "examples, padded."
        ),
    )

    @field_validator("sft", "sft_later_rounds", "lora")
    @classmethod
    def _check_passthrough(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Unknown TRL/PEFT keys fail here, at load time, not an hour later inside training."""
        return check_passthrough(value, "sft" if info.field_name == "sft_later_rounds" else info.field_name)


class GenerateSettings(Section):
    """Self-predict: K candidate answers per assistant turn from the tuned model."""

    k: int = Field(
        4, ge=2, le=50, description="Candidates per assistant turn (a greedy one plus sampled ones)."
    )
    temperatures: list[Annotated[float, Field(gt=0)]] = Field(
        [0.7, 1.0],
        min_length=1,
        description="Sampling temperatures, cycled over the sampled candidates.",
    )
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling for sampled candidates.")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        description="Seeds of the sampled candidates, cycled; empty uses run.seed + 1, + 2, ...",
    )
    max_new_tokens: int | Literal["auto"] = Field(
        "auto",
        description=(
            "Longest candidate, in tokens. auto: 1.25 x the 99th percentile of the round's current answers "
            "(at least 16), so candidates can be as long as the answers they compete with; always capped "
            "by the model's context and train.sft.max_length."
        ),
    )
    batch_size: int = Field(
        32, ge=1, description="Questions decoded together, each with its K candidates (batch_size x K rows)."
    )
    batch_tokens: int | None = Field(
        65536,
        ge=1,
        description=(
            "Token budget of one decoding batch: rows x (longest prompt + max_new_tokens), the KV cache it "
            "can fill. Questions are sorted by length and a batch ends at batch_size questions or at this "
            "budget, whichever comes first, so a few long multi-turn contexts do not pad a whole batch; a "
            "question over the budget is decoded alone. null: batch_size only."
        ),
    )
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="vLLM needs a GPU machine with vllm installed."
    )
    compile: bool = Field(
        False,
        description=(
            "CUDA only (ignored on CPU): decode with a static KV cache and the one-token step compiled as "
            "CUDA graphs (torch.compile, mode reduce-overhead); the first batch of each shape pays the "
            "compilation (tens of seconds), so it pays off on large rounds."
        ),
    )


    @field_validator("max_new_tokens", mode="before")
    @classmethod
    def _auto_or_positive(cls, value: Any) -> Any:
        """One clear error for both forms, not one per member of the union."""
        if value == "auto":
            return value
        problem = _custom((), f"must be auto or a whole number >= 1, got {_show(value)}")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise problem
        try:
            number = int(value)
        except ValueError:
            raise problem from None
        if number < 1:
            raise problem
        return number


class ArgillaSettings(Section):
    """Where labelers rank candidates: the embedded server or a remote `api_url`."""

    api_url: str | None = Field(
        None,
        description="Existing Argilla deployment (http:// or https://); empty means the embedded server.",
    )
    home: Path | None = Field(None, description="Embedded server home (default: $PICKLOOP_HOME/argilla).")
    workspace: str = Field("pickloop", description="Workspace that holds the round datasets.")
    labelers: list[str] = Field(
        default_factory=list, description="Annotator usernames added to the workspace."
    )
    min_submitted: int = Field(1, ge=1, description="Submitted responses that make a record `completed`.")
    edit_question: bool = Field(True, description="Offer a 'write a better answer' text question.")
    none_acceptable: bool = Field(True, description="Offer a 'none acceptable' label.")
    score_metadata: bool | None = Field(
        None,
        description=(
            "Put each record's value scores (value, IFD, disagreement, current log-prob) in Argilla as "
            "metadata hidden from annotators, for owners to sort and filter on. null: on the embedded "
            "server only, whose record routes hide such metadata from annotators; stock Argilla returns "
            "it to any workspace member through the API, so a remote server needs true explicitly."
        ),
    )
    suggest_model_choice: bool = Field(
        False, description="Pre-fill the model's preferred candidate (off: avoids anchoring)."
    )
    api_key_file: Path | None = Field(
        None,
        description="File (mode 0600) holding the API key of `api_url` when `ARGILLA_API_KEY` is not set.",
    )

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str | None) -> str | None:
        """An `ftp://` or host-less URL can never work: refuse it here, not after training."""
        if value is None or not value.strip():
            return None
        problem = http_url_problem(value)
        if problem:
            raise _custom((), problem)
        return value.strip()


class WaitSettings(Section):
    """Waiting for labelers: polling, webhooks, deadline, and when a round is done enough."""

    poll_interval_s: float = Field(10.0, gt=0, description="Seconds between progress polls.")
    webhooks: bool = Field(True, description="Listen for Argilla `record.completed` webhooks when reachable.")
    webhook_url: str | None = Field(
        None,
        description="URL a remote Argilla server posts webhooks to (it must reach `webhook_bind` on this "
        "machine); empty: webhooks only with the embedded server, polling otherwise.",
        pattern=r"^https?://",
    )
    webhook_bind: str = Field(
        "127.0.0.1:0",
        description="host:port the webhook listener binds (port 0: any free port; give a fixed one with "
        "`webhook_url`).",
        pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$",
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Give up waiting after this long (none: wait forever)."
    )
    min_completed_fraction: float = Field(
        1.0, gt=0, le=1, description="Fraction of completed records that ends the wait."
    )
    on_timeout: Literal["fail", "proceed"] = Field(
        "fail",
        description="At the timeout: stop with an error (re-run to keep waiting) or proceed with what is completed.",
    )


class SelectSettings(Section):
    """Which assistant turns labelers see each round, and in what order (the `score` phase's value scores).

    Turns not selected keep their current answer (`choice: auto_kept` in the round's dataset, with the
    reason). The value scores are defined in `loop/phases/score.py`; `value` ranks turns by
    `sum(weight * normalised score)`, each score normalised to its percentile rank in [0, 1] within
    the round (`current_logprob` reversed: the model doubting the current answer is worth asking).
    """

    strategy: Literal["all", "random", "value", "ifd_hard", "disagreement"] = Field(
        "all",
        description=(
            "all: every turn (up to `budget`, in data order); random: a seeded sample; value: highest "
            "weighted score first (`weights`); ifd_hard: highest `ifd_round` first; disagreement: "
            "candidates furthest from the current answer and from each other first."
        ),
    )
    budget: int | float = Field(
        1.0,
        description=(
            "Records per round: a number with a decimal point is a fraction of the round's turns (0 < f <= "
            "1; 1.0 = all), an integer a count (>= 1; more than there are turns asks them all, with a "
            "warning)."
        ),
    )
    skip_verified: bool = Field(
        False,
        description=(
            "Never re-ask a turn whose answer labelers already chose in an earlier round when the model's "
            "candidates did not change (`verified_unchanged`); off keeps today's behaviour."
        ),
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_VALUE_WEIGHTS),
        description=(
            "Weights of the `value` strategy, by score: ifd_round, ifd_base (needs `base_ifd`), "
            "current_logprob, disagreement. Omitted scores weigh 0."
        ),
    )
    base_ifd: bool = Field(
        False,
        description=(
            "Also score IFD under the base model (`ifd_base`): one more model load and two forward passes "
            "per round."
        ),
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of the `random` strategy and of ties (default: run.seed + round)."
    )

    @field_validator("budget", mode="before")
    @classmethod
    def _refuse_bool_budget(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML `true` would otherwise read as the count 1
            raise _custom((), f"expected a fraction (0 < f <= 1) or a count (>= 1), got {_show(value)}")
        return value

    @field_validator("budget")
    @classmethod
    def _check_budget(cls, value: int | float) -> int | float:
        """A budget that asks nobody (or more than everyone, as a fraction) is a mistake, not a setting."""
        if isinstance(value, int):
            if value < 1:
                raise _custom(
                    (),
                    f"a count of records must be at least 1, got {value}; use a fraction like 0.5 for half",
                )
        elif not 0 < value <= 1:
            raise _custom(
                (),
                f"a fraction of the round's turns must be in (0, 1], got {value}; write an integer (no "
                "decimal point) for a count",
            )
        return value

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if name not in VALUE_SCORES:
                raise _custom((name,), f"unknown score{_suggest(name, list(VALUE_SCORES))}")
            if weight < 0:
                raise _custom((name,), f"weights are >= 0 (0 ignores the score), got {weight}")
        return value

    @model_validator(mode="after")
    def _base_weight_needs_base_ifd(self) -> SelectSettings:
        if self.weights.get("ifd_base") and not self.base_ifd:
            raise _custom(
                ("weights", "ifd_base"),
                "ifd_base is only scored with `select.base_ifd: true`; set it, or drop this weight",
            )
        if self.strategy == "value" and not any(self.weights.values()):
            raise _custom(("weights",), "the value strategy needs at least one weight above 0")
        return self


VALUE_SCORES = ("ifd_round", "ifd_base", "current_logprob", "disagreement")
"""The scores `select.weights` may name (columns of the round's `scores.parquet`)."""

DEFAULT_VALUE_WEIGHTS = {"ifd_round": 1.0, "disagreement": 1.0, "current_logprob": 0.5}


class AggregateSettings(Section):
    """Turning several labelers' rankings into one answer per assistant turn."""

    method: Literal["borda"] = Field("borda", description="Rank aggregation across annotators.")
    on_conflict: Literal["keep_current", "best", "review"] = Field(
        "keep_current",
        description=(
            "What a record whose labelers disagree (see `conflict_below`, `conflict_top_choice`) gets: "
            "keep_current keeps the current answer (`choice: conflict_kept`); best takes the Borda winner "
            "anyway (the behaviour before conflicts were detected); review re-queues the record, in the "
            "same round, to one more labeler or an owner (`review.reviewers`) in a separate review dataset, and "
            "their ranking decides it (`loop/phases/review.py`); a record the review leaves unanswered "
            "keeps the current answer (`choice: conflict_review`) and is asked again in the next round. "
            "Edited answers and 'none acceptable' majorities are decided as before."
        ),
    )
    conflict_below: float | None = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "A record with at least two rankings is a conflict when its Kendall's W (agreement, 0..1) is "
            "below this; empty: agreement alone never makes a conflict. A single labeler is never one."
        ),
    )
    conflict_top_choice: bool = Field(
        True,
        description=(
            "A record with at least two rankings is also a conflict when the labelers' first places have "
            "no candidate in common (ties at first place count as all first)."
        ),
    )


class ReviewSettings(Section):
    """Who settles conflicted records in the round's `review` phase (`aggregate.on_conflict: review`)."""

    reviewers: list[str] = Field(
        default_factory=list,
        description=(
            "The Argilla users who review conflicted records (annotators are created like "
            "`argilla.labelers` when missing). An owner's top choice is final; anyone else is one more "
            "labeler whose ranking is added to the votes. Empty: the labelers who have not answered "
            "every conflicted record, else the owner."
        ),
    )
    workspace: str | None = Field(
        None,
        description=(
            "Workspace of the review datasets, holding only the reviewers (Argilla 2.8 cannot hide a "
            "record from some members of a workspace). Empty: `<argilla.workspace>-review`."
        ),
    )

    @field_validator("reviewers")
    @classmethod
    def _check_reviewers(cls, value: list[str]) -> list[str]:
        """A name Argilla refuses would fail only after the labelers' work, when the review starts."""
        bad = [n for n in value if not _USERNAME.match(n)]
        if bad:
            raise _custom(
                (),
                f"reviewer name {bad[0]!r} must be 1-64 characters: letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
            )
        dupes = sorted({n for n in value if value.count(n) > 1})
        if dupes:
            raise _custom((), f"reviewers listed twice: {', '.join(dupes)}")
        return value


class PublishSettings(Section):
    """Where each round's dataset revision goes: a Hub dataset repo or the local store."""

    hub_repo: str | None = Field(None, description="Hub dataset repo id; empty publishes to the local store.")
    private: bool = Field(True, description="Create the Hub repo private.")
    local_dir: Path | None = Field(None, description="Local revision store (default: <run dir>/revisions).")
    hub_token_file: Path | None = Field(
        None, description="File (mode 0600) holding the Hub token when `HF_TOKEN` is not set."
    )
    labeler_names: bool = Field(
        False,
        description="Publish labelers' usernames in the preference rows' chosen_by/rejected_by; off: "
        "stable pseudonyms (labeler-<hmac>) keyed by the run home's secret.",
    )

    @field_validator("hub_repo")
    @classmethod
    def _check_hub_repo(cls, value: str | None) -> str | None:
        """A repo id the Hub would refuse fails here, not at publish after the labelers' work."""
        if value is None or not value.strip():
            return None
        problem = repo_id_problem(value)
        if problem:
            raise _custom((), problem)
        return value


class EvalSettings(Section):
    """Human evaluation of model versions (`pickloop eval`): blind pairwise comparisons in Argilla on
    questions no round ever trains on.

    The questions come from their own file / HF dataset (`path`), or are split off the step-1 data
    before round 1 (`holdout_fraction`): the split is seeded by run.seed and the example ids, written
    to `<run dir>/eval/holdout.jsonl`, and those examples never reach training, generation or a
    published revision. Labelers and `min_submitted` are the rounds' (`argilla.*`), waiting is `wait.*`.
    """

    path: str | None = Field(
        None,
        description=(
            "JSONL file, local HF dataset folder or Hub dataset id of evaluation questions: `question` "
            "(with an optional reference `answer`) or `messages` ending with the user turn to answer (or "
            "with a reference assistant turn). Instead of `holdout_fraction`."
        ),
    )
    revision: str | None = Field(None, description="Hub revision when `path` is a Hub id.")
    split: str = Field("train", description="Split to read from an HF dataset.")
    holdout_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description=(
            "Fraction of the step-1 data held out as evaluation questions (rounded, at least 1), chosen "
            "before round 1 by a hash of run.seed and each example's id; set it before the run starts."
        ),
    )
    max_new_tokens: int | Literal["auto"] = Field(
        "auto",
        description=(
            "Longest answer, in tokens, for every model alike (greedy). auto: as `generate.max_new_tokens` "
            "auto, from the reference answers' lengths (256 without references)."
        ),
    )
    batch_size: int = Field(32, ge=1, description="Questions decoded together.")
    bootstrap: int = Field(
        1000, ge=100, description="Bootstrap resamples of the questions for the strengths' 95% intervals."
    )
    after_rounds: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list,
        description=(
            "Rounds after whose publish the `eval` phase evaluates (e.g. [1, 3]); empty: the phase is a "
            "no-op unless every_round. Judged by the labelers, waited for as a round is."
        ),
    )
    every_round: bool = Field(False, description="The `eval` phase evaluates after every round's publish.")
    models: list[str] = Field(
        default_factory=list,
        description=(
            "Models the `eval` phase compares (base, round-N), this round's model always added; empty: "
            "base, every round the phase evaluated before, and this round."
        ),
    )

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if name != "base" and not re.fullmatch(r"round-[1-9][0-9]*", name)]
        if bad:
            raise _custom((), f"unknown model {_show(bad[0])}; name base or round-N")
        return value

    @field_validator("max_new_tokens", mode="before")
    @classmethod
    def _auto_or_positive(cls, value: Any) -> Any:
        return GenerateSettings._auto_or_positive(value)

    @model_validator(mode="after")
    def _one_source(self) -> EvalSettings:
        if self.path is not None and not self.path.strip():
            self.path = None
        if self.path is not None and self.holdout_fraction is not None:
            raise _custom(("holdout_fraction",), "give either path (a question set) or holdout_fraction, not both")
        if self.every_round and self.after_rounds:
            raise _custom(("after_rounds",), "give either every_round or after_rounds, not both")
        if (self.every_round or self.after_rounds) and not self.configured():
            which = "every_round" if self.every_round else "after_rounds"
            raise _custom((which,), "the eval phase needs questions: set eval.path or eval.holdout_fraction")
        return self

    def configured(self) -> bool:
        return self.path is not None or self.holdout_fraction is not None

    def evaluates_after(self, round_n: int) -> bool:
        """Whether the `eval` phase evaluates in round `round_n`."""
        return self.every_round or round_n in self.after_rounds


# --------------------------------------------------------------------------- URL and repo id checks

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # argilla_setup.users' rule for new users

# huggingface_hub's `validate_repo_id` rules, without importing it (config errors must stay instant).
_REPO_ID = re.compile(r"^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$")


def repo_id_problem(value: str) -> str | None:
    """Why `value` is not a Hub repo id (`name` or `owner/name`), or None when it is one."""
    if not _REPO_ID.match(value) or "--" in value or ".." in value or value.endswith(".git"):
        return (
            f"not a Hub repo id: {_show(value)}; use `name` or `owner/name` with letters, digits, "
            "'-', '_' and '.' (no '--' or '..', at most 96 characters)"
        )
    return None


def http_url_problem(value: str) -> str | None:
    """Why `value` is not an http(s) URL with a host, or None when it is one."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return f"not a valid URL ({exc}): {_show(value)}"
    if parts.scheme not in ("http", "https"):
        return f"the URL must start with http:// or https://, got {_show(value)}"
    if not parts.hostname:
        return f"the URL has no host: {_show(value)}"
    return None


def default_leaves(cls: type[BaseModel] | None = None, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf key -> its default value as `model_dump(mode="json")` spells it, for every key
    that has one (a required section contributes its fields' defaults). The driver treats a key a
    finished phase did not record as holding this value, so adding a setting to pickloop does not
    make finished phases look changed."""
    out: dict[str, Any] = {}
    for name, field in (cls or RunConfig).model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if field.is_required():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                out.update(default_leaves(field.annotation, dotted))
            continue
        default = field.get_default(call_default_factory=True)
        value = default.model_dump(mode="json") if isinstance(default, BaseModel) else to_jsonable_python(default)
        out.update(flatten_leaves(dotted, value))
    return out


def flatten_leaves(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) for every leaf below `prefix`; an empty dict is a leaf."""
    if isinstance(value, dict) and value:
        return [leaf for k, v in sorted(value.items()) for leaf in flatten_leaves(f"{prefix}.{k}", v)]
    return [(prefix, value)]


class RunConfig(Section):
    """A whole run config (one YAML file); see `load_config`."""

    run: RunSettings
    data: DataSettings
    model: ModelSettings
    train: TrainSettings = Field(default_factory=TrainSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    select: SelectSettings = Field(default_factory=SelectSettings)
    argilla: ArgillaSettings = Field(default_factory=ArgillaSettings)
    wait: WaitSettings = Field(default_factory=WaitSettings)
    aggregate: AggregateSettings = Field(default_factory=AggregateSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    _file: str | None = PrivateAttr(None)
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)

    def error(self, message: str, key: str) -> ConfigError:
        """A `ConfigError` about dotted `key`, with the config file and the key's line when known
        (for problems found after loading, e.g. by the preflight checks)."""
        loc = tuple(key.split("."))
        return ConfigError(
            message, file=self._file, line=_line_for(loc, self._lines) if self._file else None, key=key
        )

    @model_validator(mode="before")
    @classmethod
    def _refuse_secrets(cls, data: Any) -> Any:
        """Secrets in a config end up in git and in logs; refuse them before anything else."""
        hit = next(_secret_keys(data), None)
        if hit is None:
            return data
        path, kind = hit
        what = "this key" if kind == "key" else "this value (it looks like a Hugging Face token)"
        raise _custom(
            path,
            "secrets do not belong in the config (it is shared, committed and logged); remove "
            f"{what} and set the ARGILLA_API_KEY / HF_TOKEN environment variable, or point "
            "`argilla.api_key_file` / `publish.hub_token_file` at a file with mode 0600",
        )

    @model_validator(mode="after")
    def _check_labelers(self) -> RunConfig:
        """Catch a run that can never complete: more submissions required than labelers listed."""
        names = self.argilla.labelers
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _custom(("argilla", "labelers"), f"labelers listed twice: {', '.join(dupes)}")
        if names and self.argilla.min_submitted > len(names):
            raise _custom(
                ("argilla", "min_submitted"),
                f"{self.argilla.min_submitted} submissions per record required but only {len(names)} "
                "labelers listed; lower `min_submitted` or add labelers",
            )
        return self

    def run_dir(self) -> Path:
        """The run directory: `run.dir` when set, else `$PICKLOOP_HOME/runs/<name>`."""
        return Path(self.run.dir).expanduser().resolve() if self.run.dir else paths.run_dir(self.run.name)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; every mistake is a `ConfigError` with file, line and YAML path.

    Relative paths in the config resolve against the config file's folder (not the working
    directory), so a config means the same thing wherever `pickloop` is started.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file; write one with `pickloop config init` (or start from configs/demo.yaml)", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config: {exc}", file=file) from None
    data, lines = _compose(text, file)
    return parse_config(data, file=file, base_dir=Path(path).absolute().parent, lines=lines)


def parse_config(
    data: Any,
    *,
    file: str = "<config>",
    base_dir: Path | None = None,
    lines: dict[tuple[Any, ...], int] | None = None,
) -> RunConfig:
    """Validate already-parsed config data (tests, programmatic runs) with the same errors as a file."""
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping of sections (run, data, model, ...)", file=file, line=1
        )
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, data, lines or {}, file) from None
    if base_dir is not None:
        _resolve_paths(cfg, Path(base_dir), file, lines or {})
    cfg._file, cfg._lines = file, lines or {}
    return cfg


def _compose(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML keeping each key's line: compose the node tree, then build plain data from it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the config is empty; start from configs/demo.yaml", file=file)
        lines: dict[tuple[Any, ...], int] = {(): node.start_mark.line + 1}
        return _construct(loader, node, (), lines, file), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        line = mark.line + 1 if mark else None
        raise ConfigError(f"not valid YAML: {what}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    file: str,
) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (`<<: *defaults`)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            where = _dotted(path) or "the top level"
            if not isinstance(key, str):
                raise ConfigError(f"keys must be strings, got {key!r} in {where}", file=file, line=line)
            if key in out:
                raise ConfigError(
                    f"duplicate key (first on line {lines[(*path, key)]}); keep one",
                    file=file,
                    line=line,
                    key=_dotted((*path, key)),
                )
            lines[(*path, key)] = line
            out[key] = _construct(loader, value_node, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_construct(loader, item, (*path, i), lines, file))
        return items
    return loader.construct_object(node, deep=True)


# --------------------------------------------------------------------------- error messages


def _custom(path: tuple[Any, ...], message: str) -> PydanticCustomError:
    """A validation error whose message is ours and whose YAML path goes `path` below its own loc."""
    return PydanticCustomError("pickloop", "{msg}", {"msg": message, "path": list(path)})


def _config_error(
    exc: ValidationError, data: dict[str, Any], lines: dict[tuple[Any, ...], int], file: str
) -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False):
        loc, message = _describe(err, data)
        problems.append((_line_for(loc, lines), _dotted(loc), message))
    problems.sort(key=lambda p: p[0] or 0)
    line, key, message = problems[0]
    if len(problems) == 1:
        error = ConfigError(message, file=file, line=line, key=key)
    else:
        body = "\n".join(f"  {ConfigError(m, file=file, line=ln, key=k)}" for ln, k, m in problems)
        error = ConfigError(f"{len(problems)} problems in the config:\n{body}", file=file)
        error.line, error.key = line, key
    error.problems = problems  # type: ignore[attr-defined]
    return error


def _describe(err: Any, data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    """The YAML path of a pydantic error and a message that says what to do."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    loc = _data_loc(err["loc"], data, keep_last=kind in ("missing", "extra_forbidden"))
    if kind == "pickloop":
        return (*loc, *ctx.get("path", ())), ctx["msg"]
    if kind == "extra_forbidden":
        return loc, f"unknown key{_suggest(str(loc[-1]), _keys_at(loc[:-1]))}"
    if kind == "missing":
        if len(loc) == 1:
            return loc, f"required section is missing; add a `{loc[0]}:` section"
        return loc, f"required key is missing; add `{loc[-1]}:` under `{_dotted(loc[:-1])}`"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping of keys (a section), got {_show(err.get('input'))}"
    if kind == "string_pattern_mismatch" and loc == ("run", "name"):
        return loc, (
            f"run names use letters, digits, '_', '.' and '-', start with a letter or digit and have "
            f"at most 64 characters, got {_show(err.get('input'))}"
        )
    return loc, f"{err['msg']}, got {_show(err.get('input'))}"


def _data_loc(loc: tuple[Any, ...], data: Any, *, keep_last: bool) -> tuple[Any, ...]:
    """Keep the parts of a pydantic loc that exist in the YAML (drops union tags like `float`)."""
    out: list[Any] = []
    cur = data
    for i, part in enumerate(loc):
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        )
        if present:
            out.append(part)
            cur = cur[part]
        elif keep_last and i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    """Line of the key at `loc`, else of its closest enclosing key present in the file."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the section at `loc` (for suggestions)."""
    model: Any = RunConfig
    for part in loc:
        field = model.model_fields.get(part) if _is_model(model) else None
        model = field.annotation if field else None
    return list(model.model_fields) if _is_model(model) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _suggest(key: str, valid: list[str], reference: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if valid and len(valid) <= 20:
        return f"; valid keys: {', '.join(valid)}"
    return f"; see {reference}" if reference else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- TRL / PEFT pass-through

MANAGED_SFT_KEYS = {"output_dir": "pickloop trains in the round directory"}
"""`SFTConfig` fields pickloop sets itself."""

_POSITIVE = {
    "sft": (
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_length",
    ),
    "lora": ("r", "lora_alpha"),
}
_NON_NEGATIVE = {"sft": ("weight_decay", "warmup_ratio", "warmup_steps"), "lora": ("lora_dropout",)}
"""Ranges TRL/PEFT only find out about in training (a negative learning rate trains backwards)."""

_PASSTHROUGH = {
    "sft": ("trl", "SFTConfig", "https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig"),
    "lora": ("peft", "LoraConfig", "https://huggingface.co/docs/peft/package_reference/lora"),
}
_FIELDS_CACHE: dict[str, dict[str, Any] | None] = {}


PASSTHROUGH_SNAPSHOT = Path(__file__).with_name("passthrough_fields.json")
"""`SFTConfig`/`LoraConfig` field names and types for the pinned TRL/PEFT versions, so `config check`
needs no TRL import (TRL pulls in torch: 3-4 s, measured, on every config error). A library at another
version is imported instead. Regenerate with `python -m loop.config snapshot` after an upgrade;
`tests/test_config.py` checks the file against the installed libraries."""


def passthrough_fields(section: str) -> dict[str, Any] | None:
    """`SFTConfig` (`sft`) or `LoraConfig` (`lora`) field names -> type hints; None without the library.

    From the snapshot when the installed library has the snapshot's version (no import), else from
    the class itself (imported lazily: TRL pulls in torch, which `pickloop --help` must not pay for).
    """
    if section not in _FIELDS_CACHE:
        import importlib.metadata

        module_name, class_name, _ = _PASSTHROUGH[section]
        try:
            version = importlib.metadata.version(module_name)
        except importlib.metadata.PackageNotFoundError:
            _FIELDS_CACHE[section] = None
            return None
        snapshot = _read_snapshot().get(module_name, {})
        if snapshot.get("version") == version and class_name in snapshot:
            _FIELDS_CACHE[section] = {k: _unspell(v) for k, v in snapshot[class_name].items()}
        else:
            _FIELDS_CACHE[section] = _class_fields(section)
    return _FIELDS_CACHE[section]


def _class_fields(section: str) -> dict[str, Any] | None:
    """The fields of the real class (imports TRL/PEFT)."""
    import dataclasses
    import importlib
    import typing

    module_name, class_name, _ = _PASSTHROUGH[section]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError:
        return None
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an unresolvable annotation: check names only
        hints = {}
    return {f.name: hints.get(f.name) for f in dataclasses.fields(cls) if f.init}


def _read_snapshot() -> dict[str, Any]:
    try:
        return json.loads(PASSTHROUGH_SNAPSHOT.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def passthrough_snapshot() -> dict[str, Any]:
    """What `passthrough_fields.json` should hold for the installed TRL/PEFT (imports them)."""
    import importlib.metadata

    out: dict[str, Any] = {}
    for section, (module_name, class_name, _) in _PASSTHROUGH.items():
        fields = _class_fields(section)
        if fields is not None:
            out[module_name] = {
                "version": importlib.metadata.version(module_name),
                class_name: {k: _spell(v) for k, v in sorted(fields.items())},
            }
    return out


_SIMPLE = {t.__name__: t for t in (int, float, bool, str, dict, list, tuple)}


def _spell(hint: Any) -> str | None:
    """A type hint as text `_unspell` reads back; classes of other libraries become `Any`."""
    if hint is None:
        return None
    if hint is type(None):
        return "None"
    if hint is Any:
        return "Any"
    if isinstance(hint, type) and _SIMPLE.get(hint.__name__) is hint:
        return hint.__name__
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (Union, types.UnionType):
        # typing caches equal Unions, so member order depends on what was imported first: sort.
        members = sorted((str(_spell(a)) for a in args), key=lambda m: (m == "None", m))
        return f"Union[{', '.join(members)}]"
    if origin in (list, dict, tuple) and args:
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else str(_spell(a)) for a in args)}]"
    if origin in (list, dict, tuple):
        return origin.__name__
    return "Any"


def _unspell(text: str | None) -> Any:
    if text is None:
        return None
    names = {**_SIMPLE, "Any": Any, "Literal": Literal, "Union": Union, "None": None}
    return eval(text, {"__builtins__": {}}, names)  # noqa: S307  (our own file, written by _spell)


def check_passthrough(value: dict[str, Any], section: str) -> dict[str, Any]:
    """Check `train.sft`/`train.lora` keys and value types against the TRL/PEFT dataclass fields.

    Numbers YAML reads as strings (`1e-4` is a string in YAML 1.1) come back as numbers.
    """
    if not value:
        return value
    fields = passthrough_fields(section)
    if fields is None:
        return value
    from pydantic import TypeAdapter

    _, class_name, reference = _PASSTHROUGH[section]
    managed: dict[str, str] = {}
    if section == "sft":
        managed = MANAGED_SFT_KEYS
    out = dict(value)
    for key, item in value.items():
        if key in managed:
            raise _custom((key,), f"cannot be set here: {managed[key]}; remove it")
        if key not in fields:
            raise _custom((key,), f"not a field of {class_name}{_suggest(key, list(fields), reference)}")
        hint = fields[key]
        if hint is None:
            continue
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # a type pydantic cannot check (e.g. a plain class): leave it to the library
            continue
        try:
            coerced = adapter.validate_python(item)
        except ValidationError:
            raise _custom(
                (key,), f"{class_name}.{key} expects {_type_name(hint)}, got {_show(item)}"
            ) from None
        if isinstance(item, str) and isinstance(coerced, int | float) and not isinstance(coerced, bool):
            out[key] = coerced
        number = out[key]
        if isinstance(number, int | float) and not isinstance(number, bool):
            if key in _POSITIVE[section] and number <= 0:
                raise _custom((key,), f"{class_name}.{key} must be greater than 0, got {_show(item)}")
            if key in _NON_NEGATIVE[section] and number < 0:
                raise _custom((key,), f"{class_name}.{key} must be 0 or more, got {_show(item)}")
    return out


# --------------------------------------------------------------------------- secrets

_SECRET_KEY = re.compile(r"(?:^|_)(?:api_?key|token|password|passwd|secret|private_key|credentials?)$")
_NOT_SECRET = {"pad_token", "eos_token", "bos_token", "unk_token", "sep_token", "cls_token", "mask_token"}
_SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def _secret_keys(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """YAML paths of keys named like a secret (api_key, token, password, ...) or values that are one."""
    if isinstance(data, dict):
        for key, value in data.items():
            name = str(key).lower().replace("-", "_")
            if name not in _NOT_SECRET and _SECRET_KEY.search(name):
                yield (*path, key), "key"
            else:
                yield from _secret_keys(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _secret_keys(value, (*path, i))
    elif isinstance(data, str) and _SECRET_VALUE.search(data):
        yield path, "value"


def read_secret(env_var: str, file: str | Path | None = None, *, required: bool = True) -> str | None:
    """A credential from the environment, else from a file only its owner can read (mode 0600).

    Errors name the variable and the file, never the secret. Returns None when nothing is given
    and `required` is false (e.g. an embedded Argilla that has its own key).
    """
    value = os.environ.get(env_var, "").strip()
    if value:
        return value
    if file is not None:
        try:
            path = Path(_expand(str(file)))
        except UnsetVariable as exc:
            raise ConfigError(
                f"environment variable ${exc.name} is not set (or is empty)", file=file
            ) from None
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ConfigError(
                f"secret file does not exist; create it with mode 0600 or set {env_var}", file=path
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("secret file is not a regular file", file=path)
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"secret file is readable by group or others (mode {mode:04o}); run `chmod 600 {path}` "
                f"or set {env_var} instead",
                file=path,
            )
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise ConfigError(f"secret file is empty; write the secret into it or set {env_var}", file=path)
        return value
    if required:
        raise ConfigError(
            f"no credential: set the {env_var} environment variable or name a file with mode 0600 "
            "in the config"
        )
    return None


# --------------------------------------------------------------------------- paths

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_MAYBE_LOCAL = {("data", "path"), ("model", "name_or_path"), ("eval", "path")}
_DATA_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".arrow"}


class UnsetVariable(LookupError):
    """A path names an environment variable that is not set (or is empty)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _expand(value: str) -> str:
    """`~`, `${PICKLOOP_HOME}` (its default when unset) and `${VAR}` / `$VAR` in paths, so configs can
    point at what `pickloop` built; an unset or empty variable is an error, not an empty string."""

    def var(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == paths.ENV_HOME:
            return str(paths.home())
        found = os.environ.get(name, "")
        if not found:
            raise UnsetVariable(name)
        return found

    return os.path.expanduser(_ENV_VAR.sub(var, value))


def _looks_local(value: str, base: Path) -> bool:
    """A local path rather than a Hub id (`name` or `owner/name`)?"""
    if value.startswith(("/", "./", "../", "~", "$")) or value in (".", ".."):
        return True
    if Path(value).suffix.lower() in _DATA_SUFFIXES or value.count("/") > 1:
        return True
    return (base / value).exists()


def _is_path_type(annotation: Any) -> bool:
    return annotation is Path or (
        get_origin(annotation) in (Union, types.UnionType) and Path in get_args(annotation)
    )


def _resolve_paths(cfg: RunConfig, base: Path, file: str, lines: dict[tuple[Any, ...], int]) -> None:
    """Expand variables in path fields and make them absolute against the config's folder; Hub ids
    stay as they are and must be valid repo ids."""
    for section_name in type(cfg).model_fields:
        section = getattr(cfg, section_name)
        for name, field in type(section).model_fields.items():
            value = getattr(section, name)
            if value is None:
                continue
            loc = (section_name, name)
            is_path = _is_path_type(field.annotation)
            if not is_path and not (loc in _MAYBE_LOCAL and isinstance(value, str)):
                continue
            try:
                expanded = _expand(str(value))
            except UnsetVariable as exc:
                raise ConfigError(
                    f"environment variable ${exc.name} is not set (or is empty); set it or write the path",
                    file=file,
                    line=_line_for(loc, lines),
                    key=_dotted(loc),
                ) from None
            local = is_path or _looks_local(expanded, base)
            if not local:
                problem = repo_id_problem(expanded)
                if problem:
                    what = "no such local path, and " + problem[0].lower() + problem[1:]
                    raise ConfigError(what, file=file, line=_line_for(loc, lines), key=_dotted(loc))
                continue
            resolved = os.path.abspath(base / expanded)
            setattr(section, name, Path(resolved) if is_path else resolved)
    regen = cfg.data.regenerate
    if regen is not None:  # documents and prompt file resolve like data.path
        for i, doc in enumerate(regen.docs):
            loc = ("data", "regenerate", "docs", i)
            try:
                expanded = _expand(doc)
            except UnsetVariable as exc:
                raise ConfigError(
                    f"environment variable ${exc.name} is not set (or is empty); set it or write the path",
                    file=file,
                    line=_line_for(loc, lines),
                    key=_dotted(loc),
                ) from None
            if regen.text_column is None or _looks_local(expanded, base):
                regen.docs[i] = os.path.abspath(base / expanded)
        if regen.prompt_file is not None:
            regen.prompt_file = Path(os.path.abspath(base / _expand(str(regen.prompt_file))))
    replay = cfg.train.replay
    if replay.scorer not in REPLAY_SCORERS:  # a scorer folder resolves like model.name_or_path
        loc = ("train", "replay", "scorer")
        try:
            expanded = _expand(replay.scorer)
        except UnsetVariable as exc:
            raise ConfigError(
                f"environment variable ${exc.name} is not set (or is empty); set it or write the path",
                file=file,
                line=_line_for(loc, lines),
                key=_dotted(loc),
            ) from None
        if _looks_local(expanded, base):
            replay.scorer = os.path.abspath(base / expanded)


# --------------------------------------------------------------------------- hashing


def config_hash(*sections: Any) -> str:
    """sha256 of the canonical JSON of one or more sections: the state machine's "settings changed?".

    Covers the effective settings (defaults included), so a changed default also redoes the phase.
    Models, mappings and lists nest freely (`config_hash([cfg.model, cfg.train], {"round": 2})`).
    """
    payload = to_jsonable_python(sections[0] if len(sections) == 1 else list(sections))
    text = json.dumps(
        payload,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- reference


def config_reference_markdown() -> str:
    """docs/reference/config.md: every key with its type, default and description, from the models."""
    out = [
        "## Config reference",
        "",
        "Generated by `pickloop config reference` from `loop/config.py`. Unknown keys are errors.",
        "Relative paths resolve against the config file's folder; `~`, `${PICKLOOP_HOME}` and other",
        "`${VAR}` expand in paths (an unset or empty variable is an error naming the key).",
        "Secrets never go in the config: use `ARGILLA_API_KEY` / `HF_TOKEN` or files with mode 0600.",
    ]
    for name, field in RunConfig.model_fields.items():
        model = field.annotation
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out += ["", f"### `{name}`" + (" (required)" if field.is_required() else ""), ""]
        if doc:
            out += [doc, ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, f in model.model_fields.items():
            optional = [a for a in get_args(f.annotation) if _is_model(a)]  # `Section | None`
            nested = f.annotation if _is_model(f.annotation) else optional[0] if optional else None
            rows = [(None, f)] if nested is None or optional else []
            for sub, g in rows + (list(nested.model_fields.items()) if nested else []):
                cells = [
                    f"`{name}.{key}" + (f".{sub}`" if sub else "`"),
                    _type_name(g.annotation) + _constraints(g),
                    _default(g),
                    g.description or "",
                ]
                out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    """Escape a table cell: `|` everywhere, a tag-like `<` outside code spans (`<name>` reads as HTML)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else re.sub(r"<(?=[A-Za-z/!])", "&lt;", p) for i, p in enumerate(parts))


_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    origin = get_origin(annotation)
    if origin is Annotated:  # list items with a range: `list of number (> 0)`
        base, *metadata = get_args(annotation)
        return _type_name(base) + _ranges(metadata)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if origin is list:
        args = get_args(annotation)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict or annotation is dict:
        return "mapping"
    if _is_model(annotation):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: Any) -> str:
    return _ranges(field.metadata)


def _ranges(metadata: Any) -> str:
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = []
    for meta in metadata:
        for inner in getattr(meta, "metadata", None) or [meta]:  # a nested `Field(gt=0)` keeps its own list
            for attr, op in ops.items():
                if getattr(inner, attr, None) is not None:
                    parts.append(f"{op} {getattr(inner, attr)}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section defaults)"
    return f"`{json.dumps(value, default=str)}`"


if __name__ == "__main__":  # python -m loop.config snapshot: rewrite passthrough_fields.json
    import sys

    if sys.argv[1:] != ["snapshot"]:
        raise SystemExit("usage: python -m loop.config snapshot")
    PASSTHROUGH_SNAPSHOT.write_text(json.dumps(passthrough_snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PASSTHROUGH_SNAPSHOT}")
