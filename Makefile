# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# They install exactly the versions in requirements.lock (Linux x86_64, Python 3.11, the CPU build of torch),
# then alignlab itself; `make lock` regenerates the lock file from pyproject.toml's ranges.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# Peers whose declared pins conflict with the lock although they run beside it (nanogcg pins transformers 4):
# installed without dependencies; `pip check` tolerates exactly their known pins.
NODEPS_LOCK := requirements-nodeps.lock
UV_VERSION := 0.13.9
# Where `make lock` finds the CPU wheel of torch (torch==2.13.0+cpu, constraints.txt): a folder of wheels, or
# the PyTorch CPU index page https://download.pytorch.org/whl/cpu/torch/ on machines without one.
TORCH_WHEELS ?= /opt/wheels
# `make lock UPGRADE=--upgrade` moves every package to the newest version the ranges admit; without it the
# lock keeps its pins and changes only what an edited pyproject.toml requires.
UPGRADE ?=

.PHONY: demo test bench docs lint install lock clean

# --no-deps: the lock is the whole environment, so nothing is resolved at install time; `pip check` proves
# it is complete. The lock holds every package's hashes, which puts pip in hash-checking mode.
$(STAMP): pyproject.toml $(LOCK) $(NODEPS_LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "$(LOCK) is for Python 3.11: make clean, then make ... PY=python3.11"; exit 1; }
	$(BIN)/pip install --quiet --no-deps --requirement $(LOCK)
	$(BIN)/pip install --quiet --no-deps --requirement $(NODEPS_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	@$(BIN)/pip check | grep -v -e '^nanogcg 0.3.0 has requirement transformers' -e '^No broken requirements' \
		| { ! grep . ; } || { echo "pip check: the environment is incomplete"; exit 1; }
	touch $(STAMP)

install: $(STAMP)

# Resolves pyproject.toml (with the dev extra) for Linux x86_64 / Python 3.11 against the CPU torch wheel.
lock:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--constraint constraints.txt --find-links $(TORCH_WHEELS) --generate-hashes $(UPGRADE) --output-file $(LOCK)
	$(BIN)/uv pip compile --quiet --no-deps requirements-nodeps.in --python-version 3.11 --generate-hashes \
		--output-file $(NODEPS_LOCK)

# One torch thread: the 1.4M-parameter world model gains nothing from two, and two threads on a busy
# 2-core machine spin-wait (a run was 100x slower). The README's numbers are for one thread.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/alignlab demo --output runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# Each benchmark runs alignlab and its peer on the same model, data and settings, at the machine's fastest
# precision, prints the ratio and writes benchmarks/results/<name>.json.
bench: $(STAMP)
	cd benchmarks && for b in sft_vs_trl dpo_vs_trl grpo_vs_trl loglik_vs_lmeval ppo_vs_sb3 gcg_vs_nanogcg \
		cache_vs_transformerlens sae_throughput; do \
		echo "== $$b"; ../$(BIN)/python $$b.py || exit 1; done

# The documentation site, into site/: strict, so a broken link, anchor or API reference fails the build.
# The CLI reference is generated from the config dataclasses (docs/hooks.py); the results tables come from
# benchmarks/results/*.json (python docs/gen_results.py rewrites them).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check alignlab tests benchmarks

clean:
	rm -rf $(VENV) runs site
