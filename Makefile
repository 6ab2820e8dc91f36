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

# One torch thread: the 1.4M-parameter world model gains nothing from two, and two threads on a busy
# 2-core machine spin-wait (a run was 100x slower). The README's numbers are for one thread.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/alignlab demo --output runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# Each benchmark runs alignlab and its peer on the same model, data and settings, and prints the ratio.
bench: $(STAMP)
	cd benchmarks && for b in sft_vs_trl dpo_vs_trl grpo_vs_trl loglik_vs_lmeval; do \
		echo "== $$b"; ../$(BIN)/python $$b.py || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check alignlab tests benchmarks

clean:
	rm -rf $(VENV) runs
