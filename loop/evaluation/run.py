"""`pickloop eval`: the steps of one evaluation, each skipped when its artifact is there and its inputs
are unchanged, so a killed evaluation resumes where it stopped.

1. check the models and the questions (every refusal happens here, before anything is generated or pushed);
2. each model's greedy answers (`answers/<model>.json`);
3. the blind A/B records (`pairs.jsonl`, model identities only here);
4. push to Argilla (`push.json`; records upserted by keyed ids), wait for the judges as a round waits;
5. pull the verdicts (`responses.jsonl`) and write `report.json`, `report.md` and `report.png`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from loop.config import RunConfig
from loop.errors import ConfigError
from loop.evaluation.report import EvalReport
from loop.paths import EvalPaths, RunPaths

log = logging.getLogger("pickloop.eval")
Reporter = Callable[[str], None]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class EvalResult:
    name: str
    paths: EvalPaths
    report: EvalReport
    dataset_url: str


def default_name(models: Sequence[str]) -> str:
    """A stable name for a model list, so re-running the same command resumes the same evaluation."""
    return "e-" + hashlib.sha256(",".join(models).encode()).hexdigest()[:8]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"evaluation names use letters, digits, '_', '.' and '-' (at most 64), got {name!r}", key="--name"
        )
    return name


def _write_if_changed(path: Path, text: str) -> bool:
    from loop.fsutil import write_text

    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def run_eval(
    config: RunConfig,
    model_names: Sequence[str],
    *,
    name: str | None = None,
    report: Reporter = print,
    progress: bool = False,
    simulated: bool = False,
    references: dict[str, str] | None = None,
) -> EvalResult:
    """Run (or resume) one evaluation and return its report.

    `simulated`: the judges are simulated (the demo); every output says so. `references` replaces the
    questions' reference answers by id (the demo's untouched FAQ answers, which its step-1 data lacks).
    """
    from loop.context import RoundContext
    from loop.evaluation import answers as ans
    from loop.evaluation import judging
    from loop.evaluation.models import resolve_models
    from loop.evaluation.pairs import plan_pairs, write_pairs
    from loop.evaluation.questions import load_questions
    from loop.evaluation.report import build_report, read_report, write_report
    from loop.phases.generate import DEFAULT_MAX_LENGTH
    from loop.phases.wait import describe

    run = RunPaths(config.run_dir())
    models = resolve_models(config, run, list(model_names))
    questions = load_questions(config, run)
    if references:
        questions = [replace(q, reference=references.get(q.id, q.reference)) for q in questions]
    name = check_name(name or default_name([m.name for m in models]))
    paths = run.evaluation(name)
    e = config.eval
    _write_if_changed(
        paths.questions, "".join(json.dumps(q.to_json(), ensure_ascii=False) + "\n" for q in questions)
    )

    # 2. answers, the same settings for every model
    max_length = int(config.train.sft.get("max_length", DEFAULT_MAX_LENGTH))
    max_new = _max_new_tokens(config, models[0], questions)
    answers: dict[str, dict[str, str]] = {}
    ctx = RoundContext(config, 0, run, report=report, progress=progress)
    for m in models:
        key = ans.answers_key(m, questions, max_new, max_length)
        got = ans.read_answers(paths.answers(m.name), key)
        if got is None:
            ctx.limit_cpu_threads()
            report(
                f"eval {name}: {m.name} answers {len(questions)} questions (greedy, at most {max_new} tokens)"
            )
            got = ans.generate_answers(
                m,
                questions,
                model_settings=config.model,
                max_new_tokens=max_new,
                batch_size=e.batch_size,
                max_length=max_length,
                progress=progress,
            )
            ans.write_answers(paths.answers(m.name), key, m, got, max_new)
        answers[m.name] = got

    # 3. the blind records
    order = [m.name for m in models]
    records = plan_pairs(questions, answers, order, run=config.run.name, name=name, seed=config.run.seed)
    write_pairs(paths.pairs, records)
    plan_key = hashlib.sha256(paths.pairs.read_bytes()).hexdigest()[:16]

    # 4. push (once per plan) and wait
    from loop.phases.push import ensure_labelers

    conn = ctx.connection()
    pushed = judging.read_pushed(paths.push)
    if pushed is None or pushed.key != plan_key:
        ensure_labelers(ctx, conn)
        pushed = judging.push(
            conn,
            records,
            run=config.run.name,
            name=name,
            workspace=config.argilla.workspace,
            min_submitted=config.argilla.min_submitted,
            key=plan_key,
            out=paths.push,
            progress=progress,
        )
        report(
            f"eval {name}: {pushed.records} blind A/B records in Argilla dataset {pushed.dataset_name}: {pushed.url}"
        )
    from loop.console import StatusLine

    line = StatusLine() if progress else None  # one changing line on a terminal, as a round's wait
    try:
        waited = judging.wait(
            conn,
            pushed,
            config,
            on_progress=lambda p: (line.update if line else report)(f"eval {name}: {describe(p)}"),
        )
    finally:
        if line is not None:
            line.close()
    report(f"eval {name}: {describe(waited.progress, final=True)} ({waited.reason})")

    # 5. pull and report
    rows = judging.pull(conn, pushed, records)
    responses_text = "".join(json.dumps(asdict(r), sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    _write_if_changed(paths.responses, responses_text)
    inputs = hashlib.sha256((plan_key + responses_text + f"{e.bootstrap}:{simulated}").encode()).hexdigest()[
        :16
    ]
    existing = read_report(paths.report_json)
    if existing is not None and existing.extra.get("inputs") == inputs and paths.plot.exists():
        result = existing
    else:
        result = build_report(
            name,
            order,
            questions,
            len(records),
            judging.judgements(rows),
            answers,
            bootstrap=e.bootstrap,
            seed=config.run.seed,
            simulated=simulated,
        )
        result.extra.update({"inputs": inputs, "dataset": pushed.dataset_name, "max_new_tokens": max_new})
        write_report(result, paths.report_json, paths.report_md, paths.plot)

    # 6. the latest published round's card
    annotate_card(config, run, result, report)
    return EvalResult(name, paths, result, pushed.url)


def annotate_card(config: RunConfig, run: RunPaths, result: EvalReport, report: Reporter) -> None:
    """Show the evaluation in the card of the latest published round, as "evaluated after round N"
    (the next round's publish carries it anyway). Only the run's latest evaluation: re-running an older
    one does not push a newer one off the card."""
    from loop.evaluation.report import card_entry, latest_report
    from loop.revisions import annotate_evaluation

    latest = latest_report(run.dir)
    if latest is None or latest.name != result.name:
        return
    done = annotate_evaluation(card_entry(result), config.publish, run_name=config.run.name, run_dir=run.dir)
    if done is None:
        return
    what = "added to" if done.changed else "already in"
    report(f"eval {result.name}: {what} the card of {done.revision} ({done.url})")


def _max_new_tokens(config: RunConfig, first, questions) -> int:
    """`eval.max_new_tokens` resolved once, with the first model's tokenizer, for every model."""
    from loop.evaluation.answers import resolve_max_new_tokens
    from loop.models import load_tokenizer

    if config.eval.max_new_tokens != "auto" or not any(q.reference for q in questions):
        return resolve_max_new_tokens(config.eval, questions, None)
    source = Path(first.source)
    tok_path = source / "adapter" if (source / "adapter").is_dir() else first.source
    return resolve_max_new_tokens(config.eval, questions, load_tokenizer(tok_path, config.model))
