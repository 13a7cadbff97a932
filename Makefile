# d2lora_exp: `make help` lists the targets.
PYTHON ?= python
VENV ?= .venv
ARGS ?=

.PHONY: help install demo test test-fast data clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-20s %s\n", $$1, $$2}'

STAMP := $(VENV)/.installed

install: $(STAMP)  ## create .venv with CPU torch 2.13.0 and the project (editable, with test extras)

# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## the embedded default: tiny model, bundled data, CPU; D2LoRA + SFT on math
	$(VENV)/bin/python -m d2lora_exp init=d2lora method=sft $(ARGS)

test: $(STAMP)  ## the whole test suite (about a minute on 2 CPU cores)
	$(VENV)/bin/python -m pytest -q $(ARGS)

test-fast: $(STAMP)  ## unit tests only, no end-to-end training runs
	$(VENV)/bin/python -m pytest -q -m "not slow" $(ARGS)

data: $(STAMP)  ## regenerate the bundled data files from their seeded generator
	$(VENV)/bin/python -m d2lora_exp.bundled.generate

clean:  ## remove run outputs (keeps the cached tiny model)
	rm -rf outputs/runs outputs/multirun
