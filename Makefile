# make train  - set up .venv and train MBDPO: cheetah-run at the paper's settings on a GPU, without one
#               walker-walk in the CPU's fast mode, profile=cpu_fast, for 5000 env steps (about 5 minutes
#               on 2 cores once its compiled graphs are cached; its return rises: README, "Set-up").
#               Another task: make train TASK=walker-run; overrides: make train ARGS="steps=5000 seed=2"
# make test   - set up .venv with the test extras and run the test suite (what CI runs)
# make learning-check - the CPU learning check of benchmarks/learning_check.py (results in
#               benchmarks/results/learning_check/)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 installs the CPU build that lies on this project's machines; on a CUDA machine
# pass TORCH_SPEC='torch' (or keep the torch you have: make install TORCH_SPEC=).
TORCH_SPEC ?= torch==2.13.0
TASK ?=
ARGS ?=
export WANDB_MODE ?= disabled
export MUJOCO_GL ?= disable

.PHONY: install train test test-fast test-extended test-mjx-all learning-check suites venv-metaworld venv-myosuite venv-maniskill venv-maniskill2 clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[dev,mjx]"

train: install
	@gpu=$$($(BIN)/python -c "import torch; print(int(torch.cuda.is_available()))"); \
	if [ "$$gpu" = 1 ]; then task=cheetah-run; profile=paper; \
	else task=walker-walk; profile="cpu_fast steps=5000"; fi; \
	if [ -n "$(TASK)" ]; then task=$(TASK); fi; \
	echo "$(BIN)/python -m mbdpo_fast.train task=$$task profile=$$profile $(ARGS)"; \
	$(BIN)/python -m mbdpo_fast.train task=$$task profile=$$profile $(ARGS)

# Test files run side by side in PYTEST_WORKERS processes (pytest-xdist; a file stays in one, so its
# module fixtures, e.g. a compiled MJX task, are built once); 0 runs them in this process.
PYTEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: install suites
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: install
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not mjx_all"

learning-check: install   # paper mode, CPU-sized, 2 tasks x 3 seeds (about 80 minutes on 2 cores)
	$(BIN)/python benchmarks/learning_check.py $(ARGS)

test-extended: install   # long benchmark runs on CPU (step_rate.py end to end, several minutes)
	$(BIN)/python -m pytest -q -m extended

test-mjx-all: install   # construct and step every MJX task (~30 min on a 2-core CPU)
	$(BIN)/python -m pytest -q -m mjx_all tests/test_mjx_env.py

# MetaWorld and MyoSuite pin MuJoCo/gymnasium versions that cannot share .venv: each gets its own
# interpreter, which runs that suite's worker processes (see mbdpo_fast/envs/__init__.py).
suites: venv-metaworld venv-myosuite venv-maniskill

venv-metaworld: .venv-metaworld/bin/python
.venv-metaworld/bin/python:
	$(PY) -m venv .venv-metaworld
	.venv-metaworld/bin/python -m pip install -q "metaworld==3.1.1" "mujoco==3.3.0" "gymnasium==1.4.0" "numpy>=2,<3" packaging

# ManiSkill3 on CPU physics (no rendering device needed); its own interpreter like the suites above.
# On a CUDA machine pass TORCH_SPEC='torch' for the physx_cuda backend's torch.
venv-maniskill: .venv-maniskill/bin/python
.venv-maniskill/bin/python:
	$(PY) -m venv .venv-maniskill
	.venv-maniskill/bin/python -m pip install -q $(if $(TORCH_SPEC),"$(TORCH_SPEC)") "mani-skill==3.0.1" "sapien==3.0.3" "numpy>=2,<3"

# The paper's ManiSkill2 tasks (LiftCube-v0, ...): needs an NVIDIA Vulkan device to create any
# environment; use it with MBDPO_MANISKILL_PYTHON=.venv-maniskill2/bin/python.
venv-maniskill2: .venv-maniskill2/bin/python
.venv-maniskill2/bin/python:
	$(PY) -m venv .venv-maniskill2
	.venv-maniskill2/bin/python -m pip install -q "mani-skill2==0.5.3" "sapien==2.2.2" "numpy<1.24"

venv-myosuite: .venv-myosuite/bin/python
.venv-myosuite/bin/python:
	$(PY) -m venv .venv-myosuite
	.venv-myosuite/bin/python -m pip install -q "myosuite==3.0.0" "mujoco==4.0.0" "gymnasium==1.2.3" "myo-sim==0.2.3" "numpy>=2,<3"

clean:
	rm -rf $(VENV) .venv-metaworld .venv-myosuite .venv-maniskill .venv-maniskill2 runs outputs .pytest_cache
