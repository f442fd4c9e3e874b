#!/bin/sh
# Issue 15 experiment on SmolLM2-135M (resumable: rerun this to continue). One thread: on the shared
# 2-core machine two intra-op threads mostly wait for each other.
# The abstract task SmolLM2 learns at 5 shots (word_categories_4way: 0.49 vs chance 0.25) and the two SUL tasks,
# k = 1% and 3% (3 and 8 heads), 60 items. TASKS=abstract,sul:sentiment,sul:topic adds the four abstract tasks
# it does not learn.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
TASKS=${TASKS:-word_categories_4way,sul:topic,sul:sentiment} PERCENTS=${PERCENTS:-1,3} ITEMS=${ITEMS:-60}
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model smollm2-135m \
  --tasks "$TASKS" --shots 5 --percents "$PERCENTS" --ablations zero,mean,knockout \
  --rankings prefix_matching --n-random 5 --max-items "$ITEMS" --results results/smollm2-135m \
  --out results/smollm2-135m/crosbie --device cpu
