#!/usr/bin/env bash
# Time to return on a GPU in one device call (within 9 minutes): walker-walk at the paper's model and
# planner (model size 5, N=512, K=20), the paper's mode (profile=paper: one dm_control environment,
# one update per step) against the fast mode (profile=fast: MJX environments on the device), one
# seed each for MINUTES of wall clock (default 3.5), by benchmarks/time_to_return.py. evals.csv,
# summary.csv and time_to_return.png (GPU name, date and commit in every row) and the runs' logs
# land in $OUT (default /tmp/out).
#
#   device run (carry .whl):  GIT_COMMIT=<sha> bash benchmarks/gpu_learning.sh [MINUTES]
#   bash benchmarks/gpu_learning.sh --dry-run        # anywhere: the plan and its checks, nothing trained
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && { DRY=1; shift; }
MINUTES=${1:-3.5}
OUT=${OUT:-/tmp/out}
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled MUJOCO_GL=disable XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
if [ -z "${PY:-}" ]; then [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; fi
mkdir -p "$OUT"
ARGS=(--device cuda --task walker-walk --configs paper fast --seeds 1 --minutes "$MINUTES"
      --eval-freq 5000 --eval-episodes 4 --runs-dir /tmp/ttr_runs --out "$OUT")
if [ "$DRY" = 1 ]; then
  exec $PY benchmarks/time_to_return.py "${ARGS[@]}" --dry-run
fi
if [ -d .whl ]; then
  rm -rf /tmp/site
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# two runs of MINUTES each plus their start-up and compilation: 9 minutes at the default
timeout 540 $PY benchmarks/time_to_return.py "${ARGS[@]}" 2>&1 | tee "$OUT/time_to_return.log"
cp /tmp/ttr_runs/walker-walk/*/s1.log "$OUT/" 2>/dev/null
for c in paper fast; do cp /tmp/ttr_runs/walker-walk/$c/s1/train.csv "$OUT/${c}_train.csv" 2>/dev/null; done
ls -l "$OUT"
