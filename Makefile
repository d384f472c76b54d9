# Two commands: `make run` serves the API and UI, `make test` runs every test. Both install first.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: install browser run lint test bench reliability clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

run: install
	$(VENV)/bin/rag serve --host $(HOST) --port $(PORT)

# Debian's Chromium (and its driver) for the browser test; Playwright is pointed at it and downloads nothing.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium chromium-driver; }

# The linter (ruff, configured in pyproject.toml) and the import direction (import-linter's contracts there).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: install browser lint
	$(PY) -m pytest
	$(VENV)/bin/rag eval answers --corpus corpus --out var/eval  # quality gate (the reader): eval/thresholds.toml
	$(VENV)/bin/rag eval answers --corpus corpus --backend extractive --out var/eval/extractive  # sentence picking's

bench: install
	$(PY) bench/ingest.py

# kill -9 at every write step and at random, torn reads, two writers, injections, fuzzing, review-room keys
# (the quick form runs inside `make test`, as tests/test_reliability.py)
reliability: install browser
	$(PY) bench/reliability.py

clean:
	rm -rf $(VENV) var build *.egg-info
