#!/usr/bin/env bash
# Offline-to-online on one GPU in one device command (collect, pretrain, fine-tune, compare), from the repository root
# with the wheels carried (`bash ../shared/tools/device-wheels.sh dmc`, carry .whl):
#   GIT_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/o2o_gpu_run.sh [COLLECT_S] [PRETRAIN_S] [FINETUNE_S]
# 1. collect: online runs on cheetah-run and walker-walk (paper settings) for COLLECT_S seconds each,
#    their replay saved as dataset chunks (save_dataset=true);
# 2. pretrain: a 2-task model on those chunks for PRETRAIN_S seconds (eval_tasks.csv: per-task score);
# 3. fine-tune: on hopper-stand (unseen: a fresh task embedding) for FINETUNE_S seconds, and from
#    scratch for the same time, both evaluated; 4. evaluate the fine-tuned checkpoint on all 3 tasks.
# Everything lands in $OUT (default /tmp/out): copy it to a folder under benchmarks/results/.
set -uo pipefail
COLLECT=${1:-120}; PRETRAIN=${2:-120}; FINETUNE=${3:-150}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source benchmarks/gpu_env.sh
R=/tmp/o2o; rm -rf $R; mkdir -p $R/data
common="device=cuda progress_bar=false model_size=5"
for t in cheetah-run walker-walk; do
  python3 -m mbdpo_fast.train task=$t $common time_limit=$COLLECT save_dataset=true eval_episodes=0 \
    checkpoint_freq=1000000 hydra.run.dir=$R/collect_$t 2>&1 | grep -v absl | tail -2
  for f in $R/collect_$t/dataset/chunk_*.pt; do cp "$f" "$R/data/chunk_${t}_$(basename $f .pt).pt"; done
done
ls -la $R/data | tee "$OUT/data.txt"
python3 -m mbdpo_fast.pretrain "tasks=[cheetah-run,walker-walk]" task=pair data_dir=$R/data $common \
  steps=1000000 time_limit=$PRETRAIN eval_freq=1000000 eval_episodes=2 log_every=100 hydra.run.dir=$R/pre \
  2>&1 | grep -v absl | tail -3 | tee "$OUT/pretrain_log.txt"
cp $R/pre/train.csv "$OUT/pretrain_train.csv"; cp $R/pre/eval_tasks.csv "$OUT/pretrain_eval_tasks.csv"
python3 -m mbdpo_fast.finetune checkpoint=$R/pre/checkpoint.pt task=hopper-stand $common time_limit=$FINETUNE \
  eval_freq=2500 eval_episodes=3 hydra.run.dir=$R/fin 2>&1 | grep -v absl | tail -3 | tee "$OUT/finetune_log.txt"
cp $R/fin/eval.csv "$OUT/finetune_eval.csv"; cp $R/fin/train.csv "$OUT/finetune_train.csv"
python3 -m mbdpo_fast.train task=hopper-stand $common time_limit=$FINETUNE eval_freq=2500 eval_episodes=3 \
  hydra.run.dir=$R/scratch 2>&1 | grep -v absl | tail -2
cp $R/scratch/eval.csv "$OUT/scratch_eval.csv"
python3 -m mbdpo_fast.evaluate checkpoint=$R/fin/checkpoint.pt episodes=3 output="$OUT/final_eval.csv" 2>&1 \
  | grep -v absl | tee "$OUT/final_eval_log.txt"
echo "--- fine-tuned (eval.csv)"; cat "$OUT/finetune_eval.csv"; echo "--- scratch"; cat "$OUT/scratch_eval.csv"
