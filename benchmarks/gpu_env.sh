# Source on the GPU machine (device tool), from the repository root: installs the carried wheels
# (.whl, filled by ../shared/tools/device-wheels.sh dmc) and sets the environment.
rm -rf /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 WANDB_MODE=disabled MUJOCO_GL=disable
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
