# Two commands: `make run` serves the API and UI, `make test` runs every test. Both install first.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

run: install
	$(VENV)/bin/rag serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) var build *.egg-info
