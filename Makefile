# bench-mlkan: two commands for a newcomer: `make bench` and `make test`.
# Each creates .venv/ on first use (`make setup` does only that step).
#
# TORCH_SPEC chooses the torch build installed before everything else, e.g.
#   make setup TORCH_SPEC="torch==2.13.0"                       (default: CPU wheel)
#   make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu126"
# An already installed torch that satisfies the project is kept.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= quick
WORKERS ?= 2
# `make tune` without arguments: a small demonstration study (override TUNE_ARGS).
TUNE_ARGS ?= --task regression_rotated --baseline kan_multilevel --trials 16 --budget 128 \
	--workers 2 --set task_options.size=small
STAMP := $(VENV)/.installed

# Allocator settings that removed 4-5x page-fault slow-downs of large layers on
# glibc (see README, "Performance"). Harmless elsewhere.
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296

.PHONY: setup test test-all bench leaderboard tune perf lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) -m pytest -q -m "not slow and not cuda" $(PYTEST_ARGS)

test-all: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) -m pytest -q $(PYTEST_ARGS)

# make bench: trains the profile into runs/results/<profile>/ (git-ignored), renders
# runs/leaderboards/<profile>/ and compares with the shipped leaderboards/results/<profile>/.
bench: $(STAMP)
	$(PY) -m bench_mlkan bench --profile $(PROFILE) --workers $(WORKERS) $(BENCH_ARGS)

# make leaderboard: re-renders every shipped profile (leaderboards/<profile>/, index README.md).
leaderboard: $(STAMP)
	$(PY) -m bench_mlkan leaderboard $(LEADERBOARD_ARGS)

tune: $(STAMP)
	$(PY) -m bench_mlkan tune $(TUNE_ARGS)

perf: $(STAMP)
	$(PY) -m bench_mlkan perf $(PERF_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy bench_mlkan

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache lightning_logs wandb
