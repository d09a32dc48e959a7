# The README's two commands: `make run` (the example shop) and `make test`.
# Both create .venv and install the project from its own files on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

$(BIN)/.installed: pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

.PHONY: install run test docs bench lint
install: $(BIN)/.installed

# Debug mode, for the delivery log page (it admits only this machine, in debug
# mode); without the interactive debugger, which would run code for a visitor.
run: $(BIN)/.installed
	$(BIN)/flask --app examples/shop/app.py run --debug --no-debugger --host $(HOST) --port $(PORT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The site in docs/_build/html, read afresh (-E: parts of it are drawn from the
# code); warnings are errors, as in tests/test_docs.py.
# The state diagram needs Graphviz's `dot` (apt-get install graphviz).
docs: $(BIN)/.installed
	$(BIN)/sphinx-build -E -W --keep-going -b html docs docs/_build/html

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks --write $(BENCH_ARGS)

# Ruff, mypy --strict, and the import contracts (which `make test` checks too,
# in tests/test_layers.py).
lint: $(BIN)/.installed
	$(BIN)/ruff check flask_posweb tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
