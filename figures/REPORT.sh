#!/bin/sh
# Assemble one model's report folder, then its figures and report:  figures/REPORT.sh MODEL REPORT_FOLDER
# (figures/REPORT.sh smollm2-135m smollm2-icl).  Every table comes from this machine's run when there is one
# (results/MODEL/..., results/REPORT_FOLDER), else from the committed copy under figures/MODEL/, so a report
# regenerates on a fresh clone without rerunning anything.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
set -e
[ $# -eq 2 ] || { echo "usage: figures/REPORT.sh MODEL REPORT_FOLDER (e.g. smollm2-135m smollm2-icl)" >&2; exit 2; }
run=results/$1 here=results/$2 committed=figures/$1
[ -d $committed ] || { echo "error: no committed folder $committed" >&2; exit 2; }
mkdir -p $here/crosbie
take() {  # take FROM_RUN COMMITTED DESTINATION NAME...: a run's table (parquet) wins over the committed CSV
  from=$1 copy=$2 to=$3; shift 3
  for name in "$@"; do
    if [ -e $to/$name.parquet ] || [ -e $to/$name.csv ]; then continue; fi
    if [ -e $from/$name.parquet ]; then cp $from/$name.parquet $to/
    elif [ -e $copy/$name.csv ]; then cp $copy/$name.csv $to/; fi
  done
}
take $run $committed $here induction_scores induction_per_seed repeated_loss
[ -e $here/induction_metadata.json ] || cp $committed/induction_metadata.json $here/
take $here $committed/icl $here crossref_aggregate crossref_both_heads crossref_correlations crossref_estimators \
  crossref_layers crossref_overlap crossref_rank_matrix crossref_retention task_accuracy pruning_heads pruning_ffns \
  pruning_heads_thresholds pruning_ffns_thresholds pruning_heads_effects pruning_rankings pruning_claims \
  layer_pruning layer_pruning_thresholds layer_distances_tasks laser laser_selected
for name in causal_effects causal_vs_random causal_repeated causal_items; do  # the causal tests: always the newest
  rm -f $here/$name.parquet $here/$name.csv $here/crosbie/$name.parquet $here/crosbie/$name.csv
done
take $run/causal $committed/causal $here causal_effects causal_vs_random causal_repeated causal_items
take $run/crosbie $committed/crosbie $here/crosbie causal_effects causal_vs_random causal_repeated causal_items
for sub in causal crosbie; do  # the causal tests' metadata (model record: e.g. a norm on the attention output)
  to=$here; [ $sub = crosbie ] && to=$here/crosbie
  if [ -e $run/$sub/causal.json ]; then cp $run/$sub/causal.json $to/
  elif [ -e $committed/$sub/causal.json ]; then cp $committed/$sub/causal.json $to/; fi
done
mkdir -p $here/exact  # exact ablation beside the cheap estimators, where a model has it
rm -f $here/exact/crossref_methods.parquet $here/exact/crossref_methods.csv
take results/$1-exact $committed/exact $here/exact crossref_methods
for kind in zero mean; do  # exact ablation's own cross-reference with the induction scores
  mkdir -p $here/exact/${kind}_loss
  rm -f $here/exact/${kind}_loss/crossref_correlations.* $here/exact/${kind}_loss/crossref_overlap.*
  take results/$1-exact/${kind}_loss $committed/exact/${kind}_loss $here/exact/${kind}_loss crossref_correlations \
    crossref_overlap
done
.venv/bin/interp figures --results $here --formats html,png
.venv/bin/interp report --results $here --out $committed/report.html
