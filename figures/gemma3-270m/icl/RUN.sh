#!/bin/sh
# Issue 17: the Gemma-3-270M study beside SmolLM2's (resumable: finished (task, shots) files and pruning cells
# are reused). The same settings as figures/smollm2-135m/icl/RUN.sh: gradient importance with both estimators,
# 14 tasks x 0/1/5 shots, 20 items a task; then the cross-reference; head pruning and layer dropping on
# antonyms, country_capital, present_past at 1 shot, 40 items a task. One thread, niced (a shared 2-core CPU).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
here=results/gemma3-icl three=antonyms,country_capital,present_past
mkdir -p $here
[ -e $here/induction_scores.parquet ] || [ -e $here/induction_scores.csv ] || \
  cp figures/gemma3-270m/induction_scores.csv figures/gemma3-270m/induction_metadata.json $here/
for positions in all answer; do
  nice -n 10 .venv/bin/interp importance --model gemma3-270m --tasks all --shots 0,1,5 --method gradient \
    --gradient-positions $positions --max-items 20 --out $here --device cpu --yes
done
.venv/bin/interp crossref --results $here
nice -n 10 .venv/bin/interp prune heads --model gemma3-270m --tasks $three --shots 1 --max-items 40 \
  --rankings own,prefix_matching,random --n-random 2 --results $here --out $here --device cpu --yes
nice -n 10 .venv/bin/interp prune ffns --model gemma3-270m --tasks $three --shots 1 --max-items 40 \
  --rankings own,random --n-random 2 --results $here --out $here --device cpu --yes
nice -n 10 .venv/bin/interp prune layers --model gemma3-270m --tasks $three --shots 1 --max-items 40 \
  --block-sizes 1,2,3,4,6 --out $here --device cpu
