#!/bin/sh
# Issue 17 causal test on Gemma-3-270M (resumable). All 14 tasks at 5 shots, 40 items a task, k = 10% (7 of 72
# heads), rankings by prefix matching and copying (stage 1 ran the six tasks of SmolLM2's stage 1 with
# TASKS=antonyms,present_past,lowercase_uppercase,country_capital,word_first_letter,english_french).
# RANKINGS=prefix_matching,copying,own adds the own-importance ranking (it computes each task's gradient).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
TASKS=${TASKS:-all} RANKINGS=${RANKINGS:-prefix_matching,copying}
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model gemma3-270m \
  --tasks "$TASKS" --shots 5 --percents 10 --ablations zero,mean --rankings "$RANKINGS" --n-random 5 \
  --max-items 40 --results results/gemma3-270m --out results/gemma3-270m/causal --device cpu
