#!/bin/sh
# Issue 15 experiment on SmolLM2-135M (resumable: rerun this to continue). One thread: on the shared
# 2-core machine two intra-op threads mostly wait for each other.
# Stage 1: the one abstract task SmolLM2 learns at 5 shots (word_categories_4way: 0.49 vs chance 0.25), k = 3%
# (8 heads), 60 items. The full design: TASKS=abstract,sul:sentiment,sul:topic PERCENTS=1,3 ITEMS=150 ./RUN.sh
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
TASKS=${TASKS:-word_categories_4way} PERCENTS=${PERCENTS:-3} ITEMS=${ITEMS:-60}
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model smollm2-135m \
  --tasks "$TASKS" --shots 5 --percents "$PERCENTS" --ablations zero,mean,knockout \
  --rankings prefix_matching --n-random 5 --max-items "$ITEMS" --results results/smollm2-135m \
  --out results/smollm2-135m/crosbie --device cpu
