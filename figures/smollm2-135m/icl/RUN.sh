#!/bin/sh
# Issue 12: the SmolLM2 report with both gradient estimators (resumable: finished (task, shots) files are reused).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for positions in all answer; do
  nice -n 10 .venv/bin/interp importance --model smollm2-135m --tasks all --shots 0,1,5 --method gradient \
    --gradient-positions $positions --max-items 20 --out results/smollm2-icl --device cpu --yes
done
.venv/bin/interp crossref --results results/smollm2-icl
