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

.PHONY: install run test bench lint
install: $(BIN)/.installed

# Debug mode, for the delivery log page (it admits only this machine, in debug
# mode); without the interactive debugger, which would run code for a visitor.
run: $(BIN)/.installed
	$(BIN)/flask --app examples/shop/app.py run --debug --no-debugger --host $(HOST) --port $(PORT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks --write $(BENCH_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check flask_posweb tests examples benchmarks
	$(BIN)/mypy
