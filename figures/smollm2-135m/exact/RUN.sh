#!/bin/sh
# Issue 17, item 2 on a subset: exact (zero) ablation of every head and FFN of SmolLM2-135M beside both
# gradient estimators and attribution patching, on the same items: 3 tasks x 40 items; the gradient estimators
# and attribution patching at 1 and 5 shots, exact ablation at ABLATION_SHOTS (default 1: on the 2-core CPU one
# (task, shots) takes about 10 min at 1 shot and three times that at 5). Resumable (finished (task, shots) files
# are reused). The full design (14 tasks, 1 and 5 shots) is TASKS=all ABLATION_SHOTS=1,5, a GPU's job.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
here=results/smollm2-exact tasks=${TASKS:-antonyms,country_capital,present_past}
mkdir -p $here
[ -e $here/induction_scores.parquet ] || [ -e $here/induction_scores.csv ] || \
  cp figures/smollm2-135m/induction_scores.csv figures/smollm2-135m/induction_metadata.json $here/
common="--model smollm2-135m --tasks $tasks --shots 1,5 --max-items 40 --out $here --device cpu --yes"
for positions in all answer; do
  nice -n 10 .venv/bin/interp importance $common --method gradient --gradient-positions $positions
done
nice -n 10 .venv/bin/interp importance $common --method attribution
nice -n 10 .venv/bin/interp importance $common --method ablation --ablations zero --shots ${ABLATION_SHOTS:-1}
.venv/bin/interp crossref --results $here
