#!/bin/sh
# Issue 17, item 2: exact ablation of every head and FFN beside both gradient estimators and attribution
# patching on the same items (40 a task, seed 0), then the cross-references. Resumable across sessions:
#   TASKS=antonyms,country_capital,present_past SHOTS=1,5 ABLATION_SHOTS=1,5 ABLATIONS=zero figures/EXACT.sh MODEL
# Every finished (task, shots, method) is a keyed table + JSON under results/MODEL-exact/importance; the ones
# committed under figures/MODEL/exact/importance are copied in first and the new ones copied back after.
# The folder's crossref_* tables cross-reference the gradient ranking (as the report); `zero_loss/` (and
# `mean_loss/`) those of exact zero (mean) ablation.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
[ $# -eq 1 ] || { echo "usage: [TASKS=..] [SHOTS=..] [ABLATION_SHOTS=..] [ABLATIONS=..] figures/EXACT.sh MODEL" >&2
                  exit 2; }
set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
model=$1 kept=figures/$1/exact here=results/$1-exact
tasks=${TASKS:-antonyms,country_capital,present_past} shots=${SHOTS:-1,5}
mkdir -p $here/importance $kept/importance
cp -n $kept/importance/* $here/importance/ 2>/dev/null || true
[ -e $here/induction_scores.csv ] || cp figures/$model/induction_scores.csv figures/$model/induction_metadata.json $here/
keep() { cp $here/importance/*.parquet $here/importance/*.json $kept/importance/; }  # the run is newest; no CSV copies
common="--model $model --tasks $tasks --max-items 40 --out $here --device cpu --yes"
for positions in all answer; do
  nice -n 10 .venv/bin/interp importance $common --shots $shots --method gradient --gradient-positions $positions
done
nice -n 10 .venv/bin/interp importance $common --shots $shots --method attribution
keep
nice -n 10 .venv/bin/interp importance $common --shots ${ABLATION_SHOTS:-1,5} --method ablation \
  --ablations ${ABLATIONS:-zero}
keep
.venv/bin/interp crossref --results $here --figures
for kind in $(echo ${ABLATIONS:-zero} | tr , ' '); do  # each exact ablation's own cross-reference
  mkdir -p $here/${kind}_loss && cp $here/induction_scores.csv $here/induction_metadata.json $here/${kind}_loss/
  cp $here/importance.* $here/${kind}_loss/
  .venv/bin/interp crossref --results $here/${kind}_loss --metric ${kind}_loss_delta --no-figures
done
