# Every target installs what it needs first, into its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
ARGS ?=

.PHONY: install train sweep test test-slow lint tensorboard bench clean

install: $(STAMP)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,mlflow,wandb]'
	touch $(STAMP)

train: $(STAMP)  ## the default experiment: GAN on moons, CPU (make train ARGS="model=wgan_gp data=ring")
	$(BIN)/genlab-train $(ARGS)

sweep: $(STAMP)  ## the seed's lr x batch_size grid on moons
	$(BIN)/genlab-train -m experiment=moons_sweep $(ARGS)

test: $(STAMP)  ## the fast test suite (what CI runs), two workers of one thread each
	$(BIN)/pytest -q -n 2 $(ARGS)

test-slow: $(STAMP)  ## the long tests: quality targets, long sweeps
	$(BIN)/pytest -q -m slow $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

tensorboard: $(STAMP)  ## TensorBoard over every run in outputs/, on this machine only
	$(BIN)/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

bench: $(STAMP)  ## genlab's loop against a plain PyTorch loop, Lightning's own floor, then the DCGAN scaling table -> bench/results.md
	$(BIN)/python bench/overhead.py $(ARGS)
	$(BIN)/python bench/floor.py
	$(BIN)/python bench/scaling.py

clean:
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache lightning_logs
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} +
