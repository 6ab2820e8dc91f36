# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install --constraint constraints.txt

.PHONY: demo test bench lint install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip --quiet
	# torch first, pinned to the CPU wheel, so that nothing below resolves a CUDA build
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/alignlab demo --output runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python benchmarks/sft_vs_trl.py

lint: $(STAMP)
	$(BIN)/ruff check alignlab tests benchmarks
	$(BIN)/ruff format --check alignlab tests benchmarks

clean:
	rm -rf $(VENV) runs
