"""The documentation: generated reference pages in step with the code, the site building with
`mkdocs build --strict` (a broken link or anchor fails), and a README that stays short and links to
pages that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loop import docs
from loop.cli import cli

ROOT = docs.ROOT
pytestmark = pytest.mark.docs


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_reference_pages_are_fresh() -> None:
    """docs/reference/config.md and cli.md are generated; this fails when the code moved on."""
    assert docs.main(["--check"]) == 0


def test_check_notices_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "config.md"
    page.write_text(docs.config_reference().rstrip() + "\n| `run.gone` | string | required | removed |\n")
    monkeypatch.setattr(docs, "PAGES", {page: docs.config_reference})
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0


def test_cli_reference_covers_every_command() -> None:
    text = docs.cli_reference_markdown()
    for path, _ in docs.commands(cli):
        assert f"## `pickloop {' '.join(path)}`" in text
    assert "## `pickloop config init`" in text


def test_site_builds_strict(tmp_path: Path) -> None:
    """The whole site, offline, as `make docs` builds it; mkdocstrings renders the API page."""
    proc = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("labelers", "troubleshooting", "reference/config", "reference/cli", "reference/api"):
        assert (site / f"{page}.html").exists(), page
    api = (site / "reference" / "api.html").read_text()
    assert "wilson_interval" in api and "pull_rankings" in api and "budget_count" in api
    html = "".join(p.read_text() for p in site.rglob("*.html"))
    # Offline: no web fonts (theme.font: false), no script or stylesheet from a CDN.
    assert "fonts.googleapis.com" not in html
    assert not re.findall(r'<script[^>]+src="https?://|<link[^>]+href="https?://[^"]+\.(?:css|js)', html)
    assert 'href="labelers.html' in (site / "index.html").read_text()  # file:// links, no directory URLs


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs_copy = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs_copy)
    page = docs_copy / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [the labelers' guide](labelers.md#no-such-section).\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs_copy)
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    proc = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-section" in proc.stderr


def test_readme_is_short_names_the_two_commands_and_links_to_pages_that_exist() -> None:
    readme = docs.README.read_text()
    assert len(readme.splitlines()) <= 350
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


def test_labelers_page_shows_every_task() -> None:
    text = (ROOT / "docs" / "labelers.md").read_text()
    for task in ("ranking", "review", "ab", "seed-review"):
        image = f"img/labeler-{task}.png"
        assert f"]({image})" in text and (ROOT / "docs" / image).exists(), image
    for words in ("Discard", "None acceptable", "Keyboard"):
        assert words in text
