#!/bin/sh
# Issue 17 causal test on Gemma-3-270M (resumable). Stage 1: three tasks at 5 shots, k = 10% (7 of 72 heads),
# rankings by prefix matching and copying (no own-importance ranking yet: its gradient over a 262k vocabulary
# is the expensive part on the CPU). TASKS=all and RANKINGS=prefix_matching,copying,own extend it.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
TASKS=${TASKS:-antonyms,country_capital,present_past} RANKINGS=${RANKINGS:-prefix_matching,copying}
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model gemma3-270m \
  --tasks "$TASKS" --shots 5 --percents 10 --ablations zero,mean --rankings "$RANKINGS" --n-random 5 \
  --max-items 40 --results results/gemma3-270m --out results/gemma3-270m/causal --device cpu
