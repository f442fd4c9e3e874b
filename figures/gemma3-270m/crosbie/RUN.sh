#!/bin/sh
# Issue 15 experiment on Gemma-3-270M (resumable: rerun this to continue). One thread: on the shared
# 2-core machine two intra-op threads mostly wait for each other.
# The tasks Gemma learns from 5 demonstrations (results/gemma3-270m/accuracy, 100 items, seed 0):
# word_categories_4way 0.59 (chance 0.25), sul:sentiment 0.66 (0.5), sul:topic 0.51 (0.25); the four letter
# and 2-way tasks stay at chance. 1% and 3% of Gemma's 72 heads are 1 and 2 heads.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
TASKS=${TASKS:-word_categories_4way,sul:sentiment,sul:topic} PERCENTS=${PERCENTS:-1,3} ITEMS=${ITEMS:-60}
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model gemma3-270m \
  --tasks "$TASKS" --shots 5 --percents "$PERCENTS" --ablations zero,mean,knockout \
  --rankings prefix_matching --n-random 5 --max-items "$ITEMS" --results results/gemma3-270m \
  --out results/gemma3-270m/crosbie --device cpu
