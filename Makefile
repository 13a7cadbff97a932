# d2lora_exp: `make help` lists the targets.
PYTHON ?= python
VENV ?= .venv
ARGS ?=

SWEEP = $(VENV)/bin/python -m d2lora_exp --config-dir sweeps --config-name
SWEEP_DIR ?= outputs/sweeps/paper-math

.PHONY: help install demo test test-unit test-e2e test-sweep lint data tiny-model clean report bench wheels \
	sweep-learning-curves sweep-exp1 sweep-exp2-math sweep-exp2-titles sweep-forgetting sweep-low-data \
	sweep-inits sweep-miniature sweep-miniature-math sweep-miniature-titles tune-miniature \
	sweep-warmup-ablation tiny-model-v3

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-24s %s\n", $$1, $$2}'

STAMP := $(VENV)/.installed

install: $(STAMP)  ## create .venv with CPU torch 2.13.0 and the project (editable, with test extras)

# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## the embedded default (the miniature world v5, CPU, ~3 min): D2LoRA + SFT on 1,000 math rows
	$(VENV)/bin/python -m d2lora_exp init=d2lora method=sft $(ARGS)

test: $(STAMP)  ## the whole test suite, all three tiers, two workers (README: measured time on 2 CPU cores)
	$(VENV)/bin/python -m pytest -q -n 2 --dist worksteal $(ARGS)

test-unit: $(STAMP)  ## unit tests only: no training run
	$(VENV)/bin/python -m pytest -q -m unit $(ARGS)

test-e2e: $(STAMP)  ## real runs of the whole chain on tiny models
	$(VENV)/bin/python -m pytest -q -m e2e $(ARGS)

test-sweep: $(STAMP)  ## every sweep definition through its make target, resume, concurrency
	$(VENV)/bin/python -m pytest -q -m sweep $(ARGS)

lint: $(STAMP)  ## ruff (settings in pyproject.toml)
	$(VENV)/bin/ruff check src tests benchmarks

# ARGS go to pretraining (e.g. --steps 300), INSTRUCT_ARGS to the instruct stage (e.g. --chats 2000); SEED to both.
SEED ?= 0
# The pretrained model the instruct stage starts from.
V5_BASE := outputs/miniature/tiny-world-v5-base
tiny-model: $(STAMP)  ## the miniature world's model (v5): pretrain (1,500 steps, ~12 min on 2 cores), then the instruct stage, into the package
	$(VENV)/bin/python -m d2lora_exp.miniature.pretrain --world 5 --seed $(SEED) --out $(V5_BASE) $(ARGS)
	$(VENV)/bin/python -m d2lora_exp.miniature.instruct --world 5 --seed $(SEED) --base $(V5_BASE) $(INSTRUCT_ARGS)

tiny-model-v3: $(STAMP)  ## world v3's base model (byte-level, no chat stage; seed 0, ~11 min on 2 cores) into the package
	$(VENV)/bin/python -m d2lora_exp.miniature.pretrain --world 3 $(ARGS)

DATA_OUT ?= outputs/miniature-world

data: $(STAMP)  ## write the miniature world's files (v5, seed 0, ~1 s; ARGS=--world 3) into DATA_OUT to read them; runs build their own
	$(VENV)/bin/python -m d2lora_exp.miniature.world --out $(DATA_OUT) --world 5 $(ARGS)

sweep-learning-curves: $(STAMP)  ## Exp1 + Exp2 on math (paper Figures 1-2); ARGS="..." adds overrides
	$(SWEEP) exp1_data_scaling $(ARGS)
	$(SWEEP) exp2_math $(ARGS)

sweep-exp1: $(STAMP)  ## Exp1: LoRA data scaling on math, SFT/DPO/ORPO x 1k-10k
	$(SWEEP) exp1_data_scaling $(ARGS)

sweep-exp2-math: $(STAMP)  ## Exp2: D2LoRA vs LoRA on math, with ARC-Easy after each run
	$(SWEEP) exp2_math $(ARGS)

sweep-exp2-titles: $(STAMP)  ## Exp2: D2LoRA vs LoRA on title generation (SFT)
	$(SWEEP) exp2_titles $(ARGS)

sweep-forgetting: $(STAMP)  ## Exp3: ARC-Easy after each Exp2 math run (shares the Exp2 runs)
	$(SWEEP) exp3_forgetting $(ARGS)

sweep-low-data: $(STAMP)  ## Exp4: ORPO below 1k examples, D2LoRA vs LoRA
	$(SWEEP) exp4_low_data $(ARGS)

sweep-inits: $(STAMP)  ## D2LoRA x init: lora, pissa, olora, eva, corda, each with and without the warm-up
	$(SWEEP) d2lora_x_init $(ARGS)

sweep-miniature: $(STAMP)  ## Exp1-4 on the miniature world (v5, CPU, 5 seeds): math (SFT, DPO, ORPO) and titles, each with its report
	$(SWEEP) miniature_math $(ARGS)
	$(SWEEP) miniature_titles $(ARGS)

sweep-miniature-math: $(STAMP)  ## the miniature world's math grid only (ARGS=method=sft, then method=dpo,orpo: each under 45 min)
	$(SWEEP) miniature_math $(ARGS)

sweep-miniature-titles: $(STAMP)  ## the miniature world's title grid only
	$(SWEEP) miniature_titles $(ARGS)

tune-miniature: $(STAMP)  ## the miniature world's learning-rate search on the validation split (LoRA baseline, n=300 and 1,000)
	$(SWEEP) miniature_tune $(ARGS)

# The LoRA baseline first (the warm-up axes pinned after ARGS: a LoRA run does not use them), then the warm-up grid.
sweep-warmup-ablation: $(STAMP)  ## warm-up ablation (miniature): D2LoRA x warm-up size x warm-up lr vs LoRA, SFT, 3 seeds
	$(SWEEP) miniature_warmup_ablation $(ARGS) init=lora warmup.size=null warmup.learning_rate=2.0e-3
	$(SWEEP) miniature_warmup_ablation $(ARGS)

bench: $(STAMP)  ## like-for-like speed vs plain TRL + padding/forward/decode counts (GPU; ARGS=--smoke: tiny model on CPU; benchmarks/RESULTS.md)
	$(VENV)/bin/python benchmarks/bench.py $(ARGS)

# What the GPU image (Python 3.12, torch/transformers/peft/accelerate preinstalled) lacks, as wheels in .whl/
# for an offline install there: pip install --no-index --no-deps .whl/*.whl
GPU_WHEELS = trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 hydra-core==1.3.8 omegaconf==2.3.1 \
	evaluate==0.4.6 nltk==3.10.4 wandb==0.31.0 pydantic==2.14.3 pydantic-core==2.50.4 typing-inspection==0.4.5 \
	annotated-types==0.8.0 platformdirs sentry-sdk gitpython gitdb smmap hydra-joblib-launcher==1.2.0 \
	hydra-submitit-launcher==1.2.0 submitit==1.5.4 math-verify==0.9.0 latex2sympy2_extended==1.11.0 \
	lm_eval==0.4.13 sacrebleu==2.6.0 scikit-learn==1.9.1 threadpoolctl==3.8.0 pytablewriter==1.2.1 \
	DataProperty==1.1.1 mbstrdecoder==1.1.5 typepy==1.3.5 tabledata==1.3.5 tcolorpy==0.1.7 pathvalidate==3.3.1 \
	chardet==6.0.0.post1 sqlitedict==2.1.0 word2number==1.1 more-itertools==11.2.1 portalocker==4.4.2 \
	colorama==0.4.6 lxml==6.1.3 tabulate==0.10.0
GPU_SDIST_WHEELS = antlr4-python3-runtime==4.9.3 rouge-score==0.1.2

wheels: $(STAMP)  ## gather the project + the dependencies the offline GPU image lacks as wheels in .whl/
	mkdir -p .whl
	$(VENV)/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)
	$(VENV)/bin/python -m pip wheel -q --no-deps -w .whl $(GPU_SDIST_WHEELS) .
	@ls .whl

report: $(STAMP)  ## tables + PNG curves of a sweep: make report SWEEP_DIR=outputs/sweeps/paper-math
	$(VENV)/bin/python -m d2lora_exp.report $(SWEEP_DIR)

clean:  ## remove run outputs (keeps the cached tiny model)
	rm -rf outputs/runs outputs/multirun
