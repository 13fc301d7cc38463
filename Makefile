# The two commands of the README: `make demo` and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
export DS_ACCELERATOR ?= cpu
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test test-slow bench bench-quality lint clean

setup:
	@bash scripts/setup_venv.sh
	@$(PY) -m semacdr_dist.cli models prepare >/dev/null

demo: setup
	$(PY) -m semacdr_dist.cli pipeline data=synthetic_demo run_dir=runs/demo

test: setup
	$(PY) -m pytest -m "not slow and not gpu" -q

test-slow: setup
	$(PY) -m pytest -m "slow" -q

bench: setup
	$(PY) benchmarks/run_all.py

bench-quality: setup
	$(PY) benchmarks/quality.py

lint: setup
	$(PY) -m ruff check semacdr_dist ray_jobs benchmarks tests

clean:
	rm -rf runs .pytest_cache .ruff_cache
