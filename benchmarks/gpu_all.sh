#!/usr/bin/env bash
# Every GPU figure of the package in one device lease: install the carried wheels, run the
# CUDA-marked tests, time the planner (E = 1 / 256 / 1024; eager, CUDA graphs, compiled, the grouped
# rollout in PyTorch compiled, Triton one launch per layer and the fused rollout; fp32 and bf16), the
# update (single-task with and without fused_update, and multi-task per model size), the denoising-step
# profile, the MJX bridge (cheetah-run; quadruped-run and dog-run, dm_control's models on MJX's JAX
# implementation and on MuJoCo Warp) and MJX's batch renderer (obs=rgb). Each step has a time
# limit; together they stay within 8 minutes. CSV and PNG files (with the GPU's name, date and
# commit in every row) and one log per step land in $OUT (default /tmp/out); a step cut by its
# limit keeps the rows it measured.
#
#   bash ../shared/tools/device-wheels.sh dmc        # on the workstation: fills ./.whl
#   device run (carry .whl):  GIT_COMMIT=<sha> bash benchmarks/gpu_all.sh
#   bash benchmarks/gpu_all.sh --dry-run             # anywhere: checks every step without running it
#
# The dry run prints each step, checks that its files exist, runs each benchmark with --dry-run
# (its plan, option parsing and output paths) and collects the CUDA tests; CI runs it.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-/tmp/out}
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled MUJOCO_GL=disable XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
# the project's interpreter where `make install` made one (PY overrides)
if [ -z "${PY:-}" ]; then [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; fi
BUDGET=480
total=0
failed=0

# step NAME LIMIT_S COMMAND... : run with a time limit (or, dry, check it)
step() {
  local name=$1 limit=$2
  shift 2
  total=$((total + limit))
  echo "== $name (limit ${limit} s): $*"
  if [ "$DRY" = 1 ]; then  # the checks run side by side; their verdicts are read after `wait`
    case "$2" in
      benchmarks/*.py) { "$@" --dry-run > "$OUT/$name.dry.log" 2>&1 || touch "$OUT/$name.dry.failed"; } & ;;
      -m) [ "$3" = pytest ] && { "$@" --collect-only -q > "$OUT/$name.dry.log" 2>&1 || touch "$OUT/$name.dry.failed"; } & ;;
    esac
    return
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s$([ $rc = 124 ] && echo ' (time limit: partial results kept)')"
  tail -4 "$OUT/$name.log" | sed 's/^/   | /'
}

mkdir -p "$OUT"
rm -f "$OUT"/*.dry.failed
if [ "$DRY" = 0 ]; then
  if [ -d .whl ]; then
    rm -rf /tmp/site
    $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=$PWD:/tmp/site
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  echo "commit $GIT_COMMIT, $(date -u +%F)" | tee -a "$OUT/gpu.txt"
fi
DEV="--device cuda"

step cuda_tests 60 $PY -m pytest -q -p no:cacheprovider -m cuda tests/
step plan_eager_graphs_triton 65 $PY benchmarks/step_rate.py $DEV --sections plan --envs 1 256 1024 \
  --variants off cudagraphs cudagraphs+bf16 triton triton-fp32 --repeats 10 --budget 1 --csv "$OUT/plan.csv"
step plan_fused_rollout 60 $PY benchmarks/step_rate.py $DEV --sections plan --envs 1 256 1024 \
  --variants triton-fused --repeats 10 --budget 1 --csv "$OUT/plan_fused.csv"
step plan_compiled 40 $PY benchmarks/step_rate.py $DEV --sections plan --envs 1 256 \
  --variants all grouped --repeats 10 --budget 1 --csv "$OUT/plan_compiled.csv"
step update 40 $PY benchmarks/step_rate.py $DEV --sections update --batches 256 1024 \
  --variants off cudagraphs+bf16 grouped --repeats 10 --budget 1 --csv "$OUT/update.csv"
step denoise_profile 40 $PY benchmarks/denoise_profile.py $DEV --backends eager triton --envs 1 64 \
  --samples 128 512 2048 --repeats 10 --budget 1 --csv "$OUT/denoise_profile.csv"
step offline_update 20 $PY benchmarks/offline_update.py $DEV --sizes 1 5 19 --repeats 5 \
  --csv "$OUT/offline_update.csv"
step mjx_bridge 30 $PY benchmarks/env_rate.py $DEV --tasks cheetah-run --envs 1024 4096 --steps 100 \
  --csv "$OUT/mjx_bridge.csv"
step mjx_quadruped 40 $PY benchmarks/env_rate.py $DEV --tasks quadruped-run --envs 1024 4096 --steps 100 \
  --csv "$OUT/mjx_quadruped.csv"
step mjx_dog 50 $PY benchmarks/env_rate.py $DEV --tasks dog-run --envs 1024 4096 --steps 50 \
  --csv "$OUT/mjx_dog.csv"
step mjx_pixels 35 $PY benchmarks/env_rate.py $DEV --pixels --impl warp --tasks cheetah-run --envs 256 1024 \
  --steps 50 --csv "$OUT/mjx_pixels.csv"

echo "== total of the limits: $total s (budget $BUDGET s)"
if [ "$total" -gt "$BUDGET" ]; then
  echo "error: the steps' limits add up to more than $BUDGET s (shorten a step)" >&2
  exit 2
fi
if [ "$DRY" = 1 ]; then
  wait
  for f in "$OUT"/*.dry.failed; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .dry.failed)
    echo "   FAILED (dry run) $name: $(tail -1 "$OUT/$name.dry.log")"
    failed=1
  done
  [ "$failed" = 0 ] && echo "dry run: every step checked" || { echo "error: a step failed its dry run (logs in $OUT)" >&2; exit 2; }
else
  ls -l "$OUT"
fi
