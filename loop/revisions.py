"""Publish a round's dataset as revision `round-N`: on the Hugging Face Hub, or in a local folder store.

Hub: `push_to_hub` (commit "pickloop <run> round <n>"), then a second commit that merges a
`## pickloop lineage` section into the card `push_to_hub` wrote (its YAML header kept byte for byte),
then tag `round-N` on that card commit. The card commit's parent is pinned to the push commit, so the
tagged tree is exactly the round's data plus its card, whatever else is pushed to `main` meanwhile
(on such a race the card commit goes to a side branch and the tag follows it).

Extra configs (`extra`: config name -> Dataset, e.g. the round's preference pairs from
`loop.preferences`) travel in that same card commit: `<name>/train-00000-of-00001.parquet` plus the
`configs`/`dataset_info` YAML entries `push_to_hub(config_name=name)` would write, so the tag holds
the main data and every extra config and `load_dataset(repo, name, revision="round-N")` reads them.
An empty extra dataset is not written (`datasets` cannot load a split without rows); its count (0)
is still in the lineage.

Exactly one revision per round, even across crashes and lost responses: an existing tag makes
`publish_round` a no-op, and before anything is pushed or committed `main`'s history is searched for
this round's commits by their messages, so a push (or card commit) that landed before a crash is tagged,
never repeated. Transient HTTP errors are retried with `loop.retry.with_retries`.

Local store (no `publish.hub_repo`): `<store>/round-N/{data/train-*.parquet, <extra>/train-*.parquet,
README.md}` written atomically, plus `<store>/revisions.json`.

An evaluation made after the last published round (`annotate_evaluation`, called by `pickloop eval`)
goes into that round's card as a card-only commit on `main` (the tag does not move; the card says
"evaluated after round N"), or into the local store's newest `round-N/README.md` (the index's content
hash refreshed). The card text is compared first, so the same evaluation never commits twice. Each round folder is also a loadable
dataset folder: `load_dataset("<store>/round-N")` (or `..., "preferences")`) or `load_round(...)`.

    from loop.revisions import RoundStats, publish_round, load_round
    stats = RoundStats.from_dataset(ds, 2, base_model="Qwen/Qwen2.5-0.5B-Instruct", adapter="runs/x/round-2/adapter")
    rev = publish_round(ds, stats, cfg.publish, run_name="x", run_dir=cfg.run_dir())
    same = load_round(2, cfg.publish, run_dir=cfg.run_dir())
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from loop import fsutil
from loop.config import PublishSettings, read_secret
from loop.errors import HubError, NotFoundError
from loop.retry import is_retryable, status_of, transport_errors, with_retries

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import HfApi

log = logging.getLogger("pickloop.revisions")

T = TypeVar("T")

CHOICE_KINDS = ("original", "model", "edited")  # `auto_kept`, `conflict_*` get a column in rounds that have them
LINEAGE_HEADING = "## pickloop lineage"
_LINEAGE_DATA = re.compile(r"<!-- pickloop-lineage (?P<json>\{.*?\}) -->", re.S)
_SPLIT = "train"
REPO_TYPE = "dataset"


def revision_name(round_n: int) -> str:
    """The tag (Hub) or folder (local) name of a round's revision."""
    return f"round-{round_n}"


def _round_of(revision: int | str) -> int:
    if isinstance(revision, int):
        return revision
    match = re.fullmatch(r"round-(\d+)", revision)
    if not match:
        raise NotFoundError(f"not a pickloop revision name: {revision!r} (expected round-N)")
    return int(match.group(1))


def _previous(revisions: Iterable[str], round_n: int) -> str | None:
    """The latest `round-k` name with k < round_n: its card holds the lineage so far."""
    rounds = [int(m.group(1)) for r in revisions if (m := re.fullmatch(r"round-(\d+)", r))]
    earlier = [k for k in rounds if k < round_n]
    return revision_name(max(earlier)) if earlier else None


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundStats:
    """One row of the lineage table: what a round did to the dataset. The driver fills it."""

    round: int
    records: int
    changed: int = 0
    choices: dict[str, int] = field(default_factory=dict)
    agreement: float | None = None
    base_model: str | None = None
    adapter: str | None = None
    simulated_labelers: bool | None = None
    selection: dict[str, int] | None = None
    """Turns asked (`selected`) and auto-kept (`not_selected`, `verified_unchanged`); None before `select`."""
    conflicts: int | None = None
    """Records whose labelers disagreed (`aggregate.on_conflict`); None before conflicts were counted."""
    configs: dict[str, int] | None = None
    """Rows of each extra config published with the round (e.g. `preferences`); None: none published."""
    review: dict[str, int] | None = None
    """`queued` / `reviewed` / `changed` records of the `review` phase; None when nothing was queued."""
    holdout: dict[str, Any] | None = None
    """`eval.holdout_fraction`: step-1 examples held out before round 1 (`count`, `fraction`, `seed`)."""
    evaluation: dict[str, Any] | None = None
    """The run's latest `pickloop eval` when this round was published (`headline`, `lines`)."""

    @classmethod
    def from_dataset(
        cls,
        dataset: datasets.Dataset,
        round_n: int,
        *,
        changed: int | None = None,
        base_model: str | None = None,
        adapter: str | None = None,
        simulated_labelers: bool | None = None,
        selection: dict[str, int] | None = None,
        conflicts: int | None = None,
        configs: dict[str, int] | None = None,
        review: dict[str, int] | None = None,
        holdout: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
    ) -> RoundStats:
        """Count records, choices and mean agreement from the provenance columns `choice`/`agreement`.

        `changed` defaults to the rows whose choice is not `original`; pass the exact count when the
        driver compared answers itself.
        """
        columns = set(dataset.column_names)
        choices = {kind: 0 for kind in CHOICE_KINDS}
        if "choice" in columns:
            for kind in dataset["choice"]:
                choices[str(kind)] = choices.get(str(kind), 0) + 1
        agreement = None
        if "agreement" in columns:
            values = [float(v) for v in dataset["agreement"] if v is not None and v == v]
            agreement = round(sum(values) / len(values), 4) if values else None
        if changed is None:
            kept = ("original", "auto_kept", "conflict_kept", "conflict_review")
            changed = sum(n for kind, n in choices.items() if kind not in kept)
        return cls(
            round=round_n,
            records=len(dataset),
            changed=changed,
            choices=choices,
            agreement=agreement,
            base_model=base_model,
            adapter=adapter,
            simulated_labelers=simulated_labelers,
            selection=selection,
            conflicts=conflicts,
            configs=configs,
            review=review,
            holdout=holdout,
            evaluation=evaluation,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundStats:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class PublishedRevision:
    """Where a round's revision lives. `created` is False when the round was already published."""

    round: int
    revision: str
    commit_sha: str
    url: str
    backend: Literal["hub", "local"]
    created: bool


# -- the dataset card's lineage section -----------------------------------------------------------


def split_card(text: str) -> tuple[str, str]:
    """(YAML header including both `---` lines, Markdown body); the header is returned untouched."""
    match = re.match(r"\A---[ \t]*\r?\n.*?\r?\n---[ \t]*(?:\r?\n|\Z)", text, re.S)
    if not match:
        return "", text
    return text[: match.end()], text[match.end() :]


def _section_bounds(body: str) -> tuple[int, int] | None:
    """Start and end offsets of the lineage section: its heading up to the next `#`/`##` heading."""
    start = re.search(rf"^{re.escape(LINEAGE_HEADING)}[ \t]*$", body, re.M)
    if not start:
        return None
    nxt = re.compile(r"^#{1,2} ", re.M).search(body, start.end())
    return start.start(), nxt.start() if nxt else len(body)


def read_lineage(card_text: str) -> list[RoundStats]:
    """The lineage rows stored in a card (from the JSON comment inside the section)."""
    bounds = _section_bounds(split_card(card_text)[1])
    if not bounds:
        return []
    match = _LINEAGE_DATA.search(split_card(card_text)[1], *bounds)
    if not match:
        return []
    try:
        rows = json.loads(match.group("json"))["rows"]
        return [RoundStats.from_json(r) for r in rows]
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable pickloop lineage data in a dataset card; starting a new table")
        return []


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _selection_cell(selection: dict[str, int] | None) -> str | None:
    """`asked / auto-kept / verified`: auto-kept counts both reasons, verified the verified ones."""
    if selection is None:
        return None
    verified = selection.get("verified_unchanged", 0)
    kept = selection.get("not_selected", 0) + verified
    return f"{selection.get('selected', 0)} / {kept} / {verified}"


def _review_cell(review: dict[str, int] | None) -> str:
    """`queued / reviewed / changed` records of the review phase (`0 / 0 / 0` when none)."""
    r = review or {}
    return f"{r.get('queued', 0)} / {r.get('reviewed', 0)} / {r.get('changed', 0)}"


def render_lineage(rows: Sequence[RoundStats], repo_id: str | None) -> str:
    """The `## pickloop lineage` section: a per-round table plus the rows as JSON for the next merge."""
    kinds = list(CHOICE_KINDS) + sorted({k for r in rows for k in r.choices} - set(CHOICE_KINDS))
    simulated = any(r.simulated_labelers is not None for r in rows)
    selected = any(r.selection is not None for r in rows)
    conflicted = any(r.conflicts for r in rows)
    extra = sorted({name for r in rows for name in r.configs or {}})
    head = ["round", "revision", "records", "changed answers", *(f"chose {k}" for k in kinds), "agreement"]
    head += ["asked / auto-kept / verified"] if selected else []
    head += ["conflicts"] if conflicted else []
    head += [f"{name} rows" for name in extra]
    reviewing = any(r.review for r in rows)
    head += ["to review / decided by review / changed by review"] if reviewing else []
    head += ["base model", "adapter"] + (["simulated labelers"] if simulated else [])
    lines = [
        LINEAGE_HEADING,
        "",
        "Each round of self-predict and manual-select is one tagged revision of this dataset"
        + (f'; load one with `load_dataset("{repo_id}", revision="round-N")`.' if repo_id else "."),
        *(
            [
                "",
                "Further configs, with their rows per round in the table (0: that revision has none): "
                + ", ".join(f"`{name}`" for name in extra)
                + (
                    f'; load one with `load_dataset("{repo_id}", "{extra[0]}", revision="round-N")`.'
                    if repo_id
                    else "."
                ),
            ]
            if extra
            else []
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in sorted(rows, key=lambda r: r.round):
        cells = [r.round, revision_name(r.round), r.records, r.changed, *(r.choices.get(k, 0) for k in kinds)]
        cells += [r.agreement] + ([_selection_cell(r.selection)] if selected else [])
        cells += [r.conflicts or 0] if conflicted else []
        cells += [(r.configs or {}).get(name) for name in extra]
        cells += [_review_cell(r.review)] if reviewing else []
        cells += [r.base_model, r.adapter] + ([r.simulated_labelers] if simulated else [])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += _evaluation_lines(max(rows, key=lambda r: r.round)) if rows else []
    data = json.dumps({"rows": [r.to_json() for r in sorted(rows, key=lambda r: r.round)]}, sort_keys=True)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e")  # never closes the HTML comment early
    lines += ["", f"<!-- pickloop-lineage {data} -->", ""]
    return "\n".join(lines) + "\n"


def _evaluation_lines(latest: RoundStats) -> list[str]:
    """The hold-out and the latest evaluation as of the newest round, under the table."""
    out = []
    h = latest.holdout
    if h:
        out += [
            "",
            f"Evaluation questions: {h.get('count')} step-1 examples held out before round 1 "
            f"(`eval.holdout_fraction: {h.get('fraction')}`, seed {h.get('seed')}); no round trained on them "
            "and no revision contains them.",
        ]
    e = latest.evaluation
    if e:
        out += ["", f"### Latest {_cell(e.get('headline'))}", ""]
        after = e.get("after_round")
        if after is not None:
            out += [
                f"Evaluated after round {int(after)}: added to this card after `{revision_name(int(after))}` "
                f"was published (on the Hub a card-only commit on `main`; the `{revision_name(int(after))}` "
                "tag still points at the card without it).",
                "",
            ]
        out += [f"- {_cell(line)}" for line in e.get("lines", [])]
        out += ["", "Strengths: Bradley–Terry, log scale, 95% bootstrap intervals; win rates count ties half."]
    return out


def merge_lineage(
    card_text: str, stats: RoundStats, repo_id: str | None, previous: Iterable[RoundStats] = ()
) -> str:
    """Add or replace the lineage section of `card_text`, keeping its YAML header byte for byte.

    Rows: those already in the card and in `previous` (the previous round's card), for rounds before
    `stats.round`, plus `stats` itself. Everything outside the section is left as it was.
    """
    header, body = split_card(card_text)
    rows = {r.round: r for r in [*read_lineage(card_text), *previous] if r.round < stats.round}
    rows[stats.round] = stats
    section = render_lineage(list(rows.values()), repo_id)
    bounds = _section_bounds(body)
    if bounds:
        start, end = bounds
        body = body[:start] + section + ("\n" + body[end:] if end < len(body) else "")
    else:
        body = (body.rstrip("\n") + "\n\n" if body.strip() else "\n" if header else "") + section
    return header + body


def with_evaluation(card_text: str, evaluation: dict[str, Any], repo_id: str | None) -> tuple[str, int | None]:
    """(the card with `evaluation` as its newest lineage row's, that row's round); the card unchanged
    and None when it has no lineage. The rest of the card, the YAML header and the other rows stay as
    they were; the machine-readable rows are rewritten with the new evaluation."""
    from dataclasses import replace

    rows = read_lineage(card_text)
    if not rows:
        return card_text, None
    latest = max(rows, key=lambda r: r.round)
    after = {**evaluation, "after_round": latest.round}
    return merge_lineage(card_text, replace(latest, evaluation=after), repo_id, rows), latest.round


@dataclass(frozen=True)
class CardUpdate:
    """What `annotate_evaluation` did to the latest revision's card."""

    revision: str
    changed: bool
    """False: the card already carried this evaluation (no commit, no write)."""
    url: str
    commit: str | None = None


# -- extra configs ------------------------------------------------------------------------------


def config_file(name: str) -> str:
    """Where an extra config's single parquet file lives in a revision (push_to_hub's layout)."""
    return f"{name}/{_SPLIT}-00000-of-00001.parquet"


def parquet_bytes(dataset: datasets.Dataset) -> bytes:
    import io

    buffer = io.BytesIO()
    dataset.to_parquet(buffer)
    return buffer.getvalue()


def written_configs(extra: dict[str, datasets.Dataset] | None) -> dict[str, datasets.Dataset]:
    """The extra configs that get files: those with rows (`datasets` cannot load an empty split)."""
    return {name: ds for name, ds in (extra or {}).items() if len(ds)}


def add_configs(
    card_text: str, extra: dict[str, tuple[datasets.Dataset, int]], drop: Iterable[str] = ()
) -> str:
    """`card_text` with each extra config (name -> (dataset, parquet size)) declared in its YAML, the
    way `push_to_hub(config_name=name)` declares it (`configs` data files and `dataset_info`), and the
    configs named in `drop` (a previous round's, inherited from `main`) no longer declared."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    drop = set(drop) - set(extra)
    if not extra and not drop:
        return card_text
    card = DatasetCard(card_text)
    for key in ("configs", "dataset_info") if drop else ():
        value = card.data.get(key)
        if isinstance(value, dict) and value.get("config_name", "default") in drop:
            card.data[key] = None
        elif isinstance(value, list):
            kept = [c for c in value if not (isinstance(c, dict) and c.get("config_name") in drop)]
            card.data[key] = (kept[0] if key == "dataset_info" and len(kept) == 1 else kept) or None
    infos, configs = {}, {}
    for name, (ds, size) in sorted(extra.items()):
        info = DatasetInfo(features=ds.features, splits=SplitDict(), config_name=name)
        info.splits.add(SplitInfo(name=_SPLIT, num_bytes=ds.data.nbytes, num_examples=len(ds)))
        info.download_size, info.dataset_size = size, ds.data.nbytes
        infos[name] = info
        configs[name] = {"data_files": [{"split": _SPLIT, "path": f"{name}/{_SPLIT}-*"}]}
    DatasetInfosDict(infos).to_dataset_card_data(card.data)
    MetadataConfigs(configs).to_dataset_card_data(card.data)
    return str(card)


# -- tokens and errors ----------------------------------------------------------------------------


def resolve_token(settings: PublishSettings) -> str | None:
    """`HF_TOKEN`, else `publish.hub_token_file` (mode 0600), else None: huggingface_hub's own login."""
    return read_secret("HF_TOKEN", settings.hub_token_file, required=False)


def _scrub(text: str, token: str | None) -> str:
    text = re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)
    return text.replace(token, "***") if token else text


def _hub_error(exc: BaseException, what: str, repo_id: str, token: str | None) -> HubError:
    """A HubError that says what failed and why, with no token in it."""
    from huggingface_hub import get_token

    status = status_of(exc)
    if status == 401 and not (token or get_token()):
        message = (
            f"{what} on {repo_id}: no Hub token (HTTP 401). Set HF_TOKEN or `publish.hub_token_file`, "
            "or run `hf auth login`."
        )
    elif status == 401:
        message = (
            f"{what} on {repo_id}: the Hub rejected the token (HTTP 401). Set a valid write token in "
            "HF_TOKEN or `publish.hub_token_file`, or run `hf auth login`."
        )
    elif status == 403:
        message = f"{what} on {repo_id}: the token may not write to this repo (HTTP 403)."
    else:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"{what} on {repo_id} failed" + (f" (HTTP {status})" if status else "") + f": {first}"
    error = HubError(_scrub(message, token))
    error.status = status  # type: ignore[attr-defined]
    return error


# -- Hub backend ----------------------------------------------------------------------------------


class HubPublisher:
    """Round revisions of one Hub dataset repo. All network calls go through `_call` (retries, errors)."""

    def __init__(
        self,
        repo_id: str,
        *,
        run_name: str,
        private: bool = True,
        token: str | None = None,
        max_tries: int = 5,
        base_wait: float = 0.5,
        sleep: Callable[[float], None] | None = None,
    ):
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.run_name = run_name
        self.private = private
        self.token = token
        self.api: HfApi = HfApi(token=token, library_name="pickloop")
        self._retry: dict[str, Any] = {
            "max_tries": max_tries,
            "base_wait": base_wait,
            "retryable": is_retryable,
        }
        if sleep is not None:
            self._retry["sleep"] = sleep

    def push_message(self, round_n: int) -> str:
        return f"pickloop {self.run_name} round {round_n}"

    def card_message(self, round_n: int) -> str:
        return f"pickloop {self.run_name} round {round_n}: lineage card"

    def url(self, revision: str) -> str:
        return f"{self.api.endpoint}/datasets/{self.repo_id}/tree/{revision}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

        try:
            return with_retries(fn, what=f"Hub {what}", **self._retry)
        except HubError:
            raise
        except (HfHubHTTPError, *transport_errors()) as exc:
            raise _hub_error(exc, what, self.repo_id, self.token) from None
        except LocalTokenNotFoundError:
            raise HubError(
                f"{what} on {self.repo_id}: no Hub token; set HF_TOKEN, `publish.hub_token_file`, "
                "or run `hf auth login`"
            ) from None

    # reads

    def tags(self) -> dict[str, str]:
        """Tag name -> commit id; empty when the repo does not exist yet."""
        from huggingface_hub.errors import RepositoryNotFoundError

        def list_tags() -> dict[str, str]:
            try:
                refs = self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE)
            except RepositoryNotFoundError:
                return {}
            return {t.name: t.target_commit for t in refs.tags}

        return self._call("list refs", list_tags)

    def history(self) -> list[tuple[str, str]]:
        """(commit id, title) of `main`, newest first; empty when the repo does not exist yet."""
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        def list_commits() -> list[tuple[str, str]]:
            try:
                commits = self.api.list_repo_commits(self.repo_id, repo_type=REPO_TYPE)
            except (RepositoryNotFoundError, RevisionNotFoundError):
                return []
            return [(c.commit_id, c.title) for c in commits]

        return self._call("list commits", list_commits)

    def card(self, revision: str) -> str:
        """README.md at `revision` ('' when there is none)."""
        from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

        def download() -> str:
            try:
                path = self.api.hf_hub_download(
                    self.repo_id, "README.md", repo_type=REPO_TYPE, revision=revision
                )
            except (EntryNotFoundError, RevisionNotFoundError):
                return ""
            return Path(path).read_text(encoding="utf-8")

        return self._call(f"read card at {revision}", download)

    def _files(self, revision: str) -> list[str]:
        """Paths of the repo's files at `revision`."""
        return self._call(
            f"list files at {revision[:8]}",
            lambda: self.api.list_repo_files(self.repo_id, repo_type=REPO_TYPE, revision=revision),
        )

    def _find(self, round_n: int) -> tuple[str | None, str | None]:
        """This round's push commit and card commit already on `main` (a crashed earlier attempt).

        A card commit counts only if it sits directly on top of the push commit found.
        """
        push_msg, card_msg = self.push_message(round_n), self.card_message(round_n)
        history = self.history()
        push_at = next((i for i, (_, title) in enumerate(history) if title == push_msg), None)
        if push_at is None:
            return None, None
        pushed = history[push_at][0]
        card = history[push_at - 1] if push_at > 0 else None
        return pushed, card[0] if card and card[1] == card_msg else None

    # the publish steps

    def _push(self, dataset: datasets.Dataset, round_n: int) -> str:
        """push_to_hub once; each retry first looks for a push that landed but lost its answer."""

        tries = 0

        def attempt() -> str:
            nonlocal tries
            tries += 1
            pushed = self._find(round_n)[0] if tries > 1 else None  # publish() has just looked
            if pushed:
                log.info("round %d: found its push commit %s; not pushing again", round_n, pushed[:8])
                return pushed
            info = dataset.push_to_hub(
                self.repo_id,
                split=_SPLIT,
                commit_message=self.push_message(round_n),
                private=self.private,
                token=self.token,
            )
            return info.oid

        return self._call(f"push round {round_n}", attempt)

    def _commit_card(
        self, round_n: int, pushed: str, stats: RoundStats, extra: dict[str, datasets.Dataset] | None = None
    ) -> str:
        """Commit the merged card, and the extra configs' files, on top of `pushed` (on `main`, or a
        side branch if `main` moved)."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete
        from huggingface_hub.errors import HfHubHTTPError

        previous = _previous(self.tags(), round_n)
        prev_rows = read_lineage(self.card(previous)) if previous else []
        files = {name: parquet_bytes(ds) for name, ds in written_configs(extra).items()}
        declared = {name: (written_configs(extra)[name], len(data)) for name, data in files.items()}
        card = add_configs(self.card(pushed), declared, drop=extra or {})
        text = merge_lineage(card, stats, self.repo_id, prev_rows)
        operations: list[Any] = [
            CommitOperationDelete(path)  # an earlier round's extra files that `main` still carries
            for path in (self._files(pushed) if extra else ())
            if path.split("/")[0] in extra and path not in {config_file(n) for n in files}
        ]
        operations += [CommitOperationAdd(config_file(name), data) for name, data in sorted(files.items())]
        operations.append(CommitOperationAdd("README.md", text.encode("utf-8")))

        def commit(branch: str) -> str:
            info = self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=self.card_message(round_n),
                repo_type=REPO_TYPE,
                revision=branch,
                parent_commit=pushed,
            )
            return info.oid

        def attempt() -> str:
            found_push, found_card = self._find(round_n)
            if found_card and found_push == pushed:
                return found_card
            try:
                return commit("main")
            except HfHubHTTPError as exc:
                if status_of(exc) not in (409, 412):
                    raise
            branch = f"pickloop-{self.run_name}-{revision_name(round_n)}"
            log.warning("main moved past round %d's push; committing its card on branch %s", round_n, branch)
            self.api.create_branch(
                self.repo_id, branch=branch, revision=pushed, repo_type=REPO_TYPE, exist_ok=True
            )
            head = self.api.list_repo_commits(self.repo_id, repo_type=REPO_TYPE, revision=branch)[0]
            if head.title == self.card_message(round_n):  # committed there by an earlier attempt
                return head.commit_id
            return commit(branch)

        return self._call(f"commit card of round {round_n}", attempt)

    def _tag(self, round_n: int, commit: str) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        tag = revision_name(round_n)

        def attempt() -> None:
            try:
                self.api.create_tag(
                    self.repo_id,
                    tag=tag,
                    revision=commit,
                    tag_message=f"pickloop {self.run_name} {tag}",
                    repo_type=REPO_TYPE,
                )
            except HfHubHTTPError as exc:
                if status_of(exc) != 409:
                    raise
                existing = self.tags().get(tag)  # an earlier try that lost its answer, or someone else
                if existing != commit:
                    raise HubError(
                        f"tag {tag} on {self.repo_id} already points at {existing}, not at {commit}"
                    ) from None

        self._call(f"tag {tag}", attempt)

    def publish(
        self, dataset: datasets.Dataset, stats: RoundStats, extra: dict[str, datasets.Dataset] | None = None
    ) -> PublishedRevision:
        """Push, merge the card (+ `extra` configs), tag; a no-op when `round-N` exists; resumes a
        crashed attempt."""
        round_n, tag = stats.round, revision_name(stats.round)
        existing = self.tags().get(tag)
        if existing:
            log.info("%s of %s already published at %s; nothing to do", tag, self.repo_id, existing[:8])
            return PublishedRevision(round_n, tag, existing, self.url(tag), "hub", created=False)
        pushed, card = self._find(round_n)
        if pushed is None:
            pushed = self._push(dataset, round_n)
        else:
            log.info("%s: resuming after its push commit %s", tag, pushed[:8])
        if card is None:
            card = self._commit_card(round_n, pushed, stats, extra)
        self._tag(round_n, card)
        log.info("published %s of %s at %s", tag, self.repo_id, card[:8])
        return PublishedRevision(round_n, tag, card, self.url(tag), "hub", created=True)

    def evaluation_message(self, name: str, round_n: int) -> str:
        return f"pickloop {self.run_name}: evaluation {name} after round {round_n}"

    def annotate_evaluation(self, evaluation: dict[str, Any]) -> CardUpdate | None:
        """Put `evaluation` into the card on `main` by a card-only commit (the `round-N` tags stay
        where they are); None when nothing is published; no commit when the card already has it.
        Each try reads `main` again, so a commit that landed but lost its answer is not repeated."""
        from huggingface_hub import CommitOperationAdd

        rounds = [_round_of(t) for t in self.tags() if re.fullmatch(r"round-\d+", t)]
        if not rounds:
            return None
        tag = revision_name(max(rounds))

        def attempt() -> CardUpdate | None:
            head = self.history()[0][0]
            card = self.card(head)
            text, after = with_evaluation(card, evaluation, self.repo_id)
            if after != max(rounds):
                log.warning("the card on main has no lineage row of %s; not adding the evaluation", tag)
                return None
            if text == card:
                return CardUpdate(tag, False, self.url("main"), head)
            info = self.api.create_commit(
                self.repo_id,
                [CommitOperationAdd("README.md", text.encode("utf-8"))],
                commit_message=self.evaluation_message(str(evaluation.get("name")), after),
                repo_type=REPO_TYPE,
                revision="main",
                parent_commit=head,
            )
            return CardUpdate(tag, True, self.url("main"), info.oid)

        return self._call("commit evaluation card", attempt)

    def load(self, round_n: int, config: str | None = None) -> datasets.Dataset:
        import datasets as hf_datasets

        tag = revision_name(round_n)
        if tag not in self.tags():
            raise NotFoundError(f"{self.repo_id} has no revision {tag}")
        return self._call(
            f"load {tag}",
            lambda: hf_datasets.load_dataset(
                self.repo_id, config, revision=tag, split=_SPLIT, token=self.token
            ),
        )

    def lineage(self, round_n: int) -> list[RoundStats]:
        return read_lineage(self.card(revision_name(round_n)))


# -- local folder store ---------------------------------------------------------------------------


class LocalStore:
    """Round revisions in a folder: `<root>/round-N/` (parquet + README.md) and `<root>/revisions.json`."""

    INDEX = "revisions.json"

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def index(self) -> dict[str, Any]:
        path = self.root / self.INDEX
        if not path.exists():
            return {"revisions": {}}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise HubError(f"{path}: unreadable revision index ({exc})") from None

    def folder(self, round_n: int) -> Path:
        return self.root / revision_name(round_n)

    @staticmethod
    def _content_sha(folder: Path) -> str:
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def _register(self, round_n: int, run_name: str, stats: RoundStats) -> str:
        sha = self._content_sha(self.folder(round_n))
        index = self.index()
        index["revisions"][revision_name(round_n)] = {
            "round": round_n,
            "run": run_name,
            "commit_sha": sha,
            "path": revision_name(round_n),
            "records": stats.records,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        fsutil.write_json(self.root / self.INDEX, index)
        return sha

    def _card(
        self,
        dataset: datasets.Dataset,
        stats: RoundStats,
        previous: list[RoundStats],
        extra: dict[str, tuple[datasets.Dataset, int]] | None = None,
    ) -> str:
        """The card push_to_hub would write (configs + dataset_info YAML), with the lineage merged."""
        from datasets.info import DatasetInfo, DatasetInfosDict
        from datasets.splits import SplitDict, SplitInfo
        from datasets.utils.metadata import MetadataConfigs
        from huggingface_hub import DatasetCard, DatasetCardData

        info = DatasetInfo(features=dataset.features, splits=SplitDict(), config_name="default")
        info.splits.add(SplitInfo(name=_SPLIT, num_examples=len(dataset)))
        data = DatasetCardData()
        DatasetInfosDict({"default": info}).to_dataset_card_data(data)
        MetadataConfigs(
            {"default": {"data_files": [{"split": _SPLIT, "path": f"data/{_SPLIT}-*"}]}}
        ).to_dataset_card_data(data)
        card = str(DatasetCard("---\n" + data.to_yaml() + "\n---\n"))
        return merge_lineage(add_configs(card, extra or {}), stats, None, previous)

    def publish(
        self,
        dataset: datasets.Dataset,
        stats: RoundStats,
        run_name: str,
        extra: dict[str, datasets.Dataset] | None = None,
    ) -> PublishedRevision:
        """Write `round-N/` (with the `extra` configs) atomically and index it; a no-op when it exists."""
        round_n, tag = stats.round, revision_name(stats.round)
        folder = self.folder(round_n)
        entry = self.index()["revisions"].get(tag)
        if entry and folder.is_dir():
            return PublishedRevision(round_n, tag, entry["commit_sha"], str(folder), "local", created=False)
        if folder.is_dir():  # written, then the process died before indexing: the folder is complete
            sha = self._register(round_n, run_name, stats)
            return PublishedRevision(round_n, tag, sha, str(folder), "local", created=True)
        before = _previous(
            [*self.index()["revisions"], *(p.name for p in self.root.glob("round-*"))], round_n
        )
        previous = self.lineage(_round_of(before)) if before else []
        with fsutil.atomic_path(folder) as tmp:
            (tmp / "data").mkdir(parents=True)
            dataset.to_parquet(str(tmp / "data" / f"{_SPLIT}-00000-of-00001.parquet"))
            declared = {}
            for name, ds in written_configs(extra).items():
                data = parquet_bytes(ds)
                (tmp / config_file(name)).parent.mkdir(parents=True)
                (tmp / config_file(name)).write_bytes(data)
                declared[name] = (ds, len(data))
            (tmp / "README.md").write_text(self._card(dataset, stats, previous, declared), encoding="utf-8")
        sha = self._register(round_n, run_name, stats)
        return PublishedRevision(round_n, tag, sha, str(folder), "local", created=True)

    def load(self, round_n: int, config: str | None = None) -> datasets.Dataset:
        import datasets as hf_datasets

        folder = self.folder(round_n)
        if revision_name(round_n) not in self.index()["revisions"] or not folder.is_dir():
            raise NotFoundError(f"{self.root} has no revision {revision_name(round_n)}")
        if config not in (None, "default"):
            return hf_datasets.load_dataset(str(folder), config, split=_SPLIT)
        files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
        return hf_datasets.load_dataset("parquet", data_files={_SPLIT: files}, split=_SPLIT)

    def annotate_evaluation(self, evaluation: dict[str, Any]) -> CardUpdate | None:
        """Put `evaluation` into the newest revision folder's card (written atomically, the index's
        content hash refreshed); None when nothing is published; no write when the card has it."""
        published = [_round_of(t) for t in self.index()["revisions"] if self.folder(_round_of(t)).is_dir()]
        if not published:
            return None
        round_n = max(published)
        path = self.folder(round_n) / "README.md"
        card = path.read_text(encoding="utf-8") if path.exists() else ""
        text, after = with_evaluation(card, evaluation, None)
        tag = revision_name(round_n)
        if after != round_n:
            return None
        if text == card:
            return CardUpdate(tag, False, str(path))
        fsutil.write_text(path, text)
        index = self.index()
        index["revisions"][tag]["commit_sha"] = self._content_sha(self.folder(round_n))
        fsutil.write_json(self.root / self.INDEX, index)
        return CardUpdate(tag, True, str(path), index["revisions"][tag]["commit_sha"])

    def lineage(self, round_n: int) -> list[RoundStats]:
        card = self.folder(round_n) / "README.md"
        return read_lineage(card.read_text(encoding="utf-8")) if card.exists() else []


# -- entry points ---------------------------------------------------------------------------------


def local_store(settings: PublishSettings, run_dir: Path | None) -> LocalStore:
    """The local store: `publish.local_dir`, else `<run dir>/revisions`."""
    if settings.local_dir is not None:
        return LocalStore(settings.local_dir)
    if run_dir is None:
        raise HubError("no publish.local_dir and no run directory to put the local revision store in")
    return LocalStore(Path(run_dir) / "revisions")


def backend_for(
    settings: PublishSettings, *, run_name: str, run_dir: Path | None = None, token: str | None = None
) -> HubPublisher | LocalStore:
    """Hub when `publish.hub_repo` is set, else the local store."""
    if settings.hub_repo:
        return HubPublisher(
            settings.hub_repo,
            run_name=run_name,
            private=settings.private,
            token=token if token is not None else resolve_token(settings),
        )
    return local_store(settings, run_dir)


def publish_round(
    dataset: datasets.Dataset,
    stats: RoundStats,
    settings: PublishSettings,
    *,
    run_name: str,
    run_dir: Path | None = None,
    token: str | None = None,
    extra: dict[str, datasets.Dataset] | None = None,
) -> PublishedRevision:
    """Publish `dataset` (and the `extra` configs) as revision `round-<stats.round>`; already
    published means a no-op."""
    if stats.records != len(dataset):
        raise HubError(
            f"round {stats.round}: stats say {stats.records} records, the dataset has {len(dataset)}"
        )
    backend = backend_for(settings, run_name=run_name, run_dir=run_dir, token=token)
    if isinstance(backend, HubPublisher):
        return backend.publish(dataset, stats, extra)
    return backend.publish(dataset, stats, run_name, extra)


def annotate_evaluation(
    evaluation: dict[str, Any],
    settings: PublishSettings,
    *,
    run_name: str,
    run_dir: Path | None = None,
    token: str | None = None,
) -> CardUpdate | None:
    """Add an evaluation made after the last published round to that round's card (Hub: `main`;
    local store: the round's folder); None when no round is published yet."""
    backend = backend_for(settings, run_name=run_name, run_dir=run_dir, token=token)
    return backend.annotate_evaluation(evaluation)


def load_round(
    revision: int | str,
    settings: PublishSettings,
    *,
    run_name: str = "pickloop",
    run_dir: Path | None = None,
    token: str | None = None,
    config: str | None = None,
) -> datasets.Dataset:
    """Read revision `round-N` (an int or "round-N") back from the configured backend; `config` names
    an extra config (e.g. "preferences") instead of the round's data."""
    backend = backend_for(settings, run_name=run_name, run_dir=run_dir, token=token)
    return backend.load(_round_of(revision), config)
