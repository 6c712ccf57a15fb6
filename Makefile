# make train  - set up .venv and train MBDPO on cheetah-run (paper settings on a GPU, the
#               cpu_small profile without one). Extra overrides: make train ARGS="steps=5000 seed=2"
# make test   - set up .venv with the test extras and run the test suite (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 installs the CPU build that lies on this project's machines; on a CUDA machine
# pass TORCH_SPEC='torch' (or keep the torch you have: make install TORCH_SPEC=).
TORCH_SPEC ?= torch==2.13.0
TASK ?= cheetah-run
ARGS ?=
export WANDB_MODE ?= disabled
export MUJOCO_GL ?= disable

.PHONY: install train test test-fast clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[dev]"

train: install
	$(BIN)/python -m mbdpo_fast.train task=$(TASK) \
	  profile=$$($(BIN)/python -c "import torch; print('paper' if torch.cuda.is_available() else 'cpu_small')") $(ARGS)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs outputs .pytest_cache
