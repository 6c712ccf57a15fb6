#!/usr/bin/env bash
# The GPU checks of the fast mode, the Triton kernels and multi-task training in one device command (about 10 minutes on an H100), from the
# repository root with the wheels carried (`bash ../shared/tools/device-wheels.sh dmc`, carry .whl):
#   GIT_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_checks.sh [tests|rates|e2e|profile|offline ...]
# Writes CSV/PNG under $OUT (default /tmp/out); copy them to benchmarks/results/ (step_rate/, denoise_profile/, offline_update/).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source benchmarks/gpu_env.sh
parts=${*:-tests rates profile}
for part in $parts; do
  case $part in
    tests)   timeout 300 python3 -m pytest -q -p no:cacheprovider -m cuda tests/ 2>&1 | tail -15 ;;
    rates)   timeout 420 python3 benchmarks/step_rate.py --sections plan update --csv "$OUT/step_rate.csv" \
               2>&1 | grep -v "^W1122\|Profiler" ;;
    e2e)     timeout 540 python3 benchmarks/step_rate.py --sections env e2e --variants off all triton \
               --csv "$OUT/step_rate.csv" 2>&1 | grep "^|\|step_rate\|sizes" ;;
    profile) timeout 420 python3 benchmarks/denoise_profile.py --sweep K H --csv "$OUT/denoise.csv" \
               --png "$OUT/denoise.png" ;;
    offline) timeout 540 python3 benchmarks/offline_update.py --csv "$OUT/offline_update.csv" ;;
    *) echo "unknown part $part"; exit 2 ;;
  esac
done
