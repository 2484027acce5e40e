# The two README commands (`make demo`, `make test`). Each installs what it needs (idempotently).
.PHONY: install demo test test-fast lint docs bench

install:
	bash scripts/install.sh test

demo: install
	.venv/bin/pickloop demo $(DEMO_ARGS)

test: install
	bash scripts/install_browser.sh
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# Unit tests only: no Argilla server, Hub server, training, browser or end-to-end run.
test-fast: install
	.venv/bin/python -m pytest -m "not argilla and not hub and not train and not browser and not e2e and not slow" $(PYTEST_ARGS)

lint: install
	.venv/bin/ruff check .

# The documentation site, offline, into site/: regenerate the reference pages, then build (--strict).
docs: install
	.venv/bin/python -m loop.docs
	NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --site-dir site

bench: install
	.venv/bin/python benchmarks/bench_driver.py $(BENCH_ARGS)
