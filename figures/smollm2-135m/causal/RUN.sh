#!/bin/sh
# Issue 17 causal test on SmolLM2-135M, resumable (rerun to continue; finished cells are reused).
# Stage 1: k = 10% at 5 shots (the closing note's question) on the six tasks with the largest few-shot gain
# (0-shot -> 5-shot accuracy); TASKS=all, PERCENTS=1,5,10,20 and SHOTS=0,5 extend it (finished cells are reused).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
PERCENTS=${PERCENTS:-10} SHOTS=${SHOTS:-5}
TASKS=${TASKS:-antonyms,present_past,lowercase_uppercase,country_capital,word_first_letter,english_french}
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model smollm2-135m \
  --tasks "$TASKS" --shots "$SHOTS" --percents "$PERCENTS" --ablations zero,mean \
  --rankings prefix_matching,copying,own --n-random 5 --max-items 40 \
  --results results/smollm2-135m --out results/smollm2-135m/causal --device cpu
