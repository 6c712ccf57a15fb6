#!/usr/bin/env bash
# One device call: install carried wheels, run the CUDA tests, time plan/update at the paper
# settings, then train cheetah-run (model size 5, paper planner) until TIME_LIMIT seconds.
# Results land in $OUT (eval.csv, train.csv, latency.csv, config.yaml, log).
#   usage (device tool, carry .whl):  GIT_COMMIT=<sha> bash benchmarks/online_gpu_run.sh [TIME_LIMIT] [overrides...]
set -uo pipefail
TIME_LIMIT=${1:-420}; shift || true
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  rm -rf /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled MUJOCO_GL=disable
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3 | tee "$OUT/cuda_tests.txt"
python3 benchmarks/step_rate.py --sections plan update --variants off --envs 1 --batches 256 --csv "$OUT/latency.csv"
rm -rf /tmp/run
timeout $((TIME_LIMIT + 90)) python3 -m mbdpo_fast.train task=cheetah-run model_size=5 device=cuda time_limit="$TIME_LIMIT" \
  progress_bar=false hydra.run.dir=/tmp/run "$@" 2>&1 | grep -v absl | tee "$OUT/train_log.txt"
cp /tmp/run/eval.csv /tmp/run/train.csv /tmp/run/config.yaml "$OUT/" 2>/dev/null
echo "--- eval.csv"; cat /tmp/run/eval.csv
echo "--- train.csv (step, episode_reward, env_steps_per_s, plan_ms, update_ms)"
cut -d, -f1,3,5,6,7 /tmp/run/train.csv
