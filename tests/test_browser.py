"""The labeler's path in a real browser, against the real embedded Argilla stack.

The driver pushes a round (loop.annotate.push); headless Chromium (Debian's package, driven by
Playwright) signs in to the Argilla UI as a new annotator account, opens the round's dataset from the
home page, ranks the candidates with a tie (one card dragged, the rest moved with the UI's number-key
shortcut), writes a better answer, answers "none acceptable: No" and submits. The driver's pull
(loop.annotate.pull) must then return exactly that ranking, answer and label, and nothing else.

A screenshot of the filled-in record is kept under test-artifacts/browser/ (gitignored). To refresh
the README's screenshot (docs/labeler-ui.png) from it, run this test alone (it then uses readable,
fixed dataset and workspace names, which would collide if two runs shared a server):

    PICKLOOP_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest tests/test_browser.py

Chromium is installed by `scripts/install_browser.sh` (called by `make test`); `playwright install`
is never needed: the system binary is launched directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from argilla_setup import schema
from argilla_setup.connection import Api, Connection
from argilla_setup.users import add_users
from loop import annotate
from loop.phases.aggregate import Response

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("PICKLOOP_CHROMIUM", "/usr/bin/chromium")
# Headless, and none of Chromium's own background connections: this network refuses them.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
README_SCREENSHOT = ROOT / "docs" / "labeler-ui.png"
SLOTS = 4
MODEL = "tiny-qwen2"

# Questions from the Python FAQ; the dataset's current answer is a degraded one (as in a real step-1
# dataset) and the model offers three more. `ranking` names the texts from best to worst; a nested
# list is a tie. The labeler ranks the shown record this way and writes `better`.
RECORDS = [
    {
        "id": "library-0088",
        "question": "How do I copy a file?",
        "current": "The shutil module contains a shutil.copyfile function. Note that on",
        "candidates": [
            "The shutil module contains a shutil.copyfile function. It does not copy file "
            "permissions and metadata; shutil.copy2 preserves most of it.",
            "Use the threading module and not the low-level thread module.",
            "Use shutil.copyfile.",
        ],
        "ranking": [[1], [3, 0], [2]],  # indexes into [current, *candidates]
        "better": "Use shutil.copyfile(src, dst) to copy the contents; shutil.copy2(src, dst) "
        "also keeps most metadata such as permissions and times.",
    },
    {
        "id": "programming-0139",
        "question": "How do I iterate over a sequence in reverse order?",
        "current": "Use the reversed built-in function. It does not touch your original sequence.",
        "candidates": [
            "Use the reversed built-in function.",
            "Sort the sequence first and then iterate over it.",
            "Use the atexit module.",
        ],
        "ranking": [[0], [1], [2, 3]],
        "better": "Use the reversed built-in: for x in reversed(sequence): ... leaves the sequence as it is.",
    },
    {
        "id": "programming-0128",
        "question": "How do I convert a number to a string?",
        "current": "Use the built-in type constructor str, e.g. str(144) gives the string 144.",
        "candidates": [
            "Use int.",
            "Use str; for hexadecimal or octal use hex or oct.",
            "Numbers cannot be converted to strings in Python.",
        ],
        "ranking": [[2], [0], [1, 3]],
        "better": "Use str(144); hex(144) and oct(144) give hexadecimal and octal strings.",
    },
]


def _uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright; fails (not skips) with the fix when either is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_browser.sh (make test does)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (make test does)")
    expect.set_options(timeout=30_000)  # the default 5 s is short for a UI on 2 busy cores
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _round_items() -> list[annotate.RoundItem]:
    return [
        annotate.RoundItem(
            example_id=r["id"],
            turn=0,
            context=({"role": "user", "content": r["question"]},),
            current_answer=r["current"],
            candidates=tuple(
                annotate.Candidate(text, MODEL, 0.0 if i == 0 else 0.8, mean_logprob=-0.5 - i)
                for i, text in enumerate(r["candidates"])
            ),
            message_index=1,
        )
        for r in RECORDS
    ]


def _expected_ranking(spec: dict, rec: annotate.PlannedRecord) -> list[tuple[str, int]]:
    """(slot, rank) for the spec's ranking, found through the plan's shuffled slots."""
    texts = [spec["current"], *spec["candidates"]]
    slot_of = {c.text: slot for slot, c in rec.slots.items()}
    pairs = []
    for rank, group in enumerate(spec["ranking"], 1):
        pairs += [(slot_of[texts[i]], rank) for i in group]
    assert sorted(s for s, _ in pairs) == sorted(rec.slots), "the spec must rank every slot"
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def _local_only(host: str):
    """Route handler: the UI's own server only (it asks for Google Fonts, unreachable here)."""

    def handle(route):
        if urlparse(route.request.url).netloc == host:
            route.continue_()
        else:
            route.abort()

    return handle


def test_labeler_ranks_edits_and_submits_in_the_argilla_ui(argilla_stack, browser, tmp_path):
    from playwright.sync_api import expect

    owner = Connection(argilla_stack.api_url, argilla_stack.api_key)
    update_screenshot = os.environ.get("PICKLOOP_UPDATE_SCREENSHOT") == "1"
    labeler = _uniq("labeler")
    # Unique names share the session's server safely; the README's screenshot gets readable ones.
    run = "python-faq" if update_screenshot else _uniq("browser")
    workspace = "pickloop" if update_screenshot else _uniq("browser-ws")

    # The driver's push: plan (shuffled slots, provenance hidden) then upsert into a new round dataset.
    plan = annotate.plan_records(_round_items(), run=run, round_n=1, slots=SLOTS, seed=7)
    with Api(owner) as api:
        (account,) = add_users(
            api, [labeler], workspace=workspace, create_workspace=True, home=argilla_stack.home
        )
    pushed = annotate.push(
        owner,
        plan,
        round_dir=tmp_path,
        run=run,
        round_n=1,
        workspace=workspace,
        slots=SLOTS,
        options=schema.SchemaOptions(),
        progress=False,
    )
    assert pushed.records == len(RECORDS)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT)
    context.route("**/*", _local_only(urlparse(argilla_stack.api_url).netloc))
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        # Sign in with the credentials `pickloop argilla users add` printed.
        page.goto(f"{argilla_stack.api_url}/sign-in")
        page.locator("input[name=Username]").fill(labeler)
        page.locator("input[name=Password]").fill(account.password)
        page.locator("button[type=submit]").click()
        page.wait_for_url(lambda url: "/sign-in" not in url)

        # Open the round's dataset from the home page's list.
        page.get_by_text(pushed.dataset_name, exact=True).click()
        page.wait_for_url(re.compile(rf"/dataset/{pushed.dataset_id}/annotation-mode"))
        ranking = page.locator(f'[aria-label="Question: {schema.RANKING_QUESTION}"]')
        expect(ranking.locator(".draggable__rank-card--unranked")).to_have_count(SLOTS)

        # Which record the UI shows first is the search engine's business: find it by its question.
        def field(title: str):
            heading = page.locator(".text_field_component__title-content", has_text=re.compile(f"^{title}$"))
            return page.locator(".text_field_component", has=heading).locator(".content-area")

        question = field("Question").inner_text().strip()
        shown = [i for i, r in enumerate(RECORDS) if r["question"] == question]
        assert shown, f"the UI shows {question!r}, not one of the pushed questions"
        spec, rec = RECORDS[shown[0]], plan[shown[0]]
        for i, slot in enumerate(schema.slot_names(SLOTS), 1):  # each candidate under its slot's title
            expect(field(f"Answer {i}")).to_have_text(rec.slots[slot].text)
        expected = _expected_ranking(spec, rec)

        # Rank: the best card by drag and drop, the others with the number-key shortcut (focus a card,
        # press its rank). After each move the card must sit in that rank's slot.
        rank_slots = ranking.locator(".draggable__slot")
        for n, (slot, rank) in enumerate(expected):
            card = ranking.locator(f'[id="{slot}"]')
            target = rank_slots.nth(rank - 1).locator(".draggable__slot-box")
            if n == 0:
                card.drag_to(target)
            else:
                card.focus()
                page.keyboard.press(str(rank))
            expect(target.locator(f'[id="{slot}"]')).to_be_visible()
            page.wait_for_timeout(350)  # the UI joins digits typed within 300 ms ("1","2" -> 12)
        for rank in range(1, SLOTS + 1):
            want = sorted(s for s, r in expected if r == rank)
            got = sorted(
                rank_slots.nth(rank - 1)
                .locator(".draggable__slot-box > [id]")
                .evaluate_all("els => els.map(e => e.id)")
            )
            assert got == want, f"rank {rank}: the UI shows {got}, expected {want}"

        # Write a better answer (replacing whatever is in the editor) and say a candidate is usable.
        better = page.locator(f'[aria-label="Question: {schema.BETTER_ANSWER_QUESTION}"]')
        better.locator(".container").click()
        editor = better.locator('[contenteditable="true"]')
        editor.press("Control+a")
        page.keyboard.type(spec["better"])
        expect(editor).to_have_text(spec["better"])
        none_q = page.locator(f'[aria-label="Question: {schema.NONE_ACCEPTABLE_QUESTION}"]')
        none_q.locator(f'label[for="{schema.NONE_ACCEPTABLE_QUESTION}_{schema.NONE_ACCEPTABLE_NO}"]').click()
        expect(
            none_q.locator(f'input[id="{schema.NONE_ACCEPTABLE_QUESTION}_{schema.NONE_ACCEPTABLE_NO}"]')
        ).to_be_checked()

        submit = page.locator("button.button--submit")
        expect(submit).to_be_enabled()
        page.mouse.move(0, 0)  # no hover effects in the screenshot
        page.screenshot(path=ARTIFACTS / "labeler-filled.png")
        if update_screenshot:
            README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ARTIFACTS / "labeler-filled.png", README_SCREENSHOT)

        # Submit: the UI posts the response itself; then it moves on to the next pending record.
        response_path = re.compile(r"/api/v1/(records/[^/]+/responses|responses/[^/]+)$")
        with page.expect_response(
            lambda r: r.request.method in ("POST", "PUT") and response_path.search(urlparse(r.url).path)
        ) as answer:
            submit.click()
        assert answer.value.ok, f"the UI's submit got HTTP {answer.value.status}: {answer.value.text()}"
        assert json.loads(answer.value.request.post_data)["status"] == "submitted"
        expect(page.get_by_text(spec["question"], exact=True)).to_be_hidden()
        page.screenshot(path=ARTIFACTS / "labeler-after-submit.png")
    except BaseException:
        with contextlib.suppress(Exception):  # never hide the real failure behind a screenshot error
            page.screenshot(path=ARTIFACTS / "failure.png")
        raise
    finally:
        context.close()

    # The driver's pull returns exactly what the labeler did in the browser, and nothing else.
    pulled = annotate.pull(owner, pushed.dataset_id, plan)
    assert (pulled.missing, pulled.discarded, pulled.draft) == (0, 0, 0)
    assert [(r["record"], r["user"], r["status"], r["none_acceptable"]) for r in pulled.raw] == [
        (rec.external_id, labeler, "submitted", False)  # False: answered "No" (None: not answered)
    ]
    (got,) = pulled.responses[rec.external_id]
    assert sorted(got.ranking, key=lambda p: (p[1], p[0])) == expected
    assert got == Response(labeler, got.ranking, spec["better"], False)
    assert all(not v for k, v in pulled.responses.items() if k != rec.external_id)

    # The raw REST record too: the values and ranks the UI sent, status submitted.
    with Api(owner) as api:
        records = api.get(
            f"/api/v1/datasets/{pushed.dataset_id}/records", params={"include": "responses", "limit": 10}
        )["items"]
    (raw,) = [r for r in records if r["external_id"] == rec.external_id]
    (response,) = raw["responses"]
    assert response["status"] == "submitted"
    ranked = response["values"][schema.RANKING_QUESTION]["value"]
    assert sorted((v["value"], v["rank"]) for v in ranked) == sorted(expected)
    assert response["values"][schema.BETTER_ANSWER_QUESTION]["value"] == spec["better"]
    assert response["values"][schema.NONE_ACCEPTABLE_QUESTION]["value"] == schema.NONE_ACCEPTABLE_NO
    assert raw["status"] == "completed"  # min_submitted=1
