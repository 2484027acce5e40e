# The two README commands. Each installs what it needs (idempotently) before running.
.PHONY: install demo test lint bench

install:
	bash scripts/install.sh test

demo: install
	.venv/bin/pickloop demo $(DEMO_ARGS)

test: install
	bash scripts/install_browser.sh
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench: install
	.venv/bin/python -m loop.bench $(BENCH_ARGS)
