# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo serve test docs lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/forewarn demo

# The service on the demo's log, on loopback without tokens (make demo first).
serve: $(STAMP)
	test -f forewarn-demo/forewarn.db || $(BIN)/forewarn demo
	$(BIN)/forewarn serve --db forewarn-demo/forewarn.db --outbox forewarn-demo/outbox --listen 127.0.0.1:8080 --insecure-no-auth

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# The documentation in site/ (the reference pages regenerated from the code first).
docs: $(STAMP)
	$(BIN)/python docs/gen.py
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Re-pin every dependency (run after editing pyproject.toml's ranges).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -e '.[dev,test]'
	.lockenv/bin/pip freeze --all --exclude-editable | grep -v '^-e \|^pip==' > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis site
