#!/bin/sh
# Crosbie & Shutova's test on one model (issue 15), resumable: rerun to continue.
#   TASKS=... PERCENTS=1,3 ITEMS=60 figures/CROSBIE.sh MODEL
# The top 1% / 3% of heads by prefix matching removed (zero, mean) or only their induction edges knocked out,
# against 5 draws of as many random heads, at 5 shots. One thread: on the shared 2-core machine two intra-op
# threads mostly wait for each other.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
[ $# -eq 1 ] && [ -n "$TASKS" ] || { echo "usage: TASKS=task,sul:task,... figures/CROSBIE.sh MODEL" >&2; exit 2; }
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec nice -n 10 .venv/bin/interp ablate --model "$1" \
  --tasks "$TASKS" --shots 5 --percents "${PERCENTS:-1,3}" --ablations zero,mean,knockout \
  --rankings prefix_matching --n-random 5 --max-items "${ITEMS:-60}" --results "results/$1" \
  --out "results/$1/crosbie" --device cpu
