# One entry point for people and CI. `make run` and `make test` work on a fresh machine:
# they create .venv, install the package and its test tools, and prepare what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE_CSV ?= ../shared/data/cqc-directory-sample.csv
LOCK := requirements.lock
BENCH_LOCK := requirements-bench.lock
LOCK_TOOL_VENV := .venv-lock
UV_VERSION := 0.13.9
BABEL_KEYWORDS := -k T -k P:1,2 -k C:1c,2 --no-default-keywords

GOVUK := node_modules/govuk-frontend/package.json

.PHONY: staff-assets install lock run test lint check-imports messages-extract messages-update messages-check bench diagram clean

install: $(VENV)/.installed

# Everything comes from the lock (exact versions, hashes checked): a fresh machine in six months
# gets what passed today. The package itself is installed without resolving anything more.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

# GOV.UK Frontend for the staff pages (and axe-core + Lighthouse for the tests), from npm, exactly as pinned (with integrity hashes) by
# package-lock.json. Without npm the staff pages still work, unstyled, and say so in the log.
staff-assets: $(GOVUK)

$(GOVUK): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --ignore-scripts && touch $@; \
	else echo "npm not found: the staff pages will be unstyled and the accessibility audits skipped (install Node.js, then make staff-assets)"; fi

# Upgrading is a deliberate commit: `make lock` re-resolves (keeping current pins where they still
# fit; `make lock UPGRADE=--upgrade` takes the newest), then run `make test` and commit both files.
lock:
	$(PYTHON) -m venv $(LOCK_TOOL_VENV)
	$(LOCK_TOOL_VENV)/bin/python -m pip install -q uv==$(UV_VERSION)
	$(LOCK_TOOL_VENV)/bin/uv pip compile pyproject.toml requirements-build.in --extra test \
		--universal --python-version 3.11 --generate-hashes $(UPGRADE) -o $(LOCK)
	$(LOCK_TOOL_VENV)/bin/uv pip compile pyproject.toml requirements-build.in --extra test --extra bench \
		--universal --python-version 3.11 --generate-hashes -c $(LOCK) $(UPGRADE) -o $(BENCH_LOCK)

# Serve the web chat (and Telegram when INTAKE_TELEGRAM_TOKEN is set) on http://127.0.0.1:8080.
# The directory sample is imported on first start when it is there.
run: install staff-assets
	mkdir -p var
	$(BIN)/intake db upgrade
	@if [ -f "$(SAMPLE_CSV)" ]; then export INTAKE_DIRECTORY_CSV="$${INTAKE_DIRECTORY_CSV:-$(SAMPLE_CSV)}"; \
	else echo "No directory loaded yet: import the regulator's monthly file with '$(BIN)/intake directory import FILE.csv'."; fi; \
	exec $(BIN)/intake serve

test: install staff-assets
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	bash scripts/ensure-chromium
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check-imports: install
	$(BIN)/lint-imports

# gettext workflow: extract from the code, merge into every .po, compile is done in memory at start.
messages-extract: install
	$(BIN)/pybabel extract -F babel.cfg $(BABEL_KEYWORDS) --sort-by-file --no-wrap \
		--project care-intake-bot --copyright-holder "Care intake bot" -o locales/messages.pot .

messages-update: messages-extract
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --no-wrap --ignore-obsolete

messages-check: install
	$(BIN)/python -m pytest tests/i18n -q

diagram: install
	$(BIN)/python -m dialogs.diagram > dialogs/intake.mmd

bench: install
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(BENCH_LOCK)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LOCK_TOOL_VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
