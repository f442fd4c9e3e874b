#!/bin/sh
# Assemble the SmolLM2 report folder: new importance + crossref (RUN.sh), the causal test's tables, and the
# pruning tables of the earlier 3-task study where this session did not rerun them, then figures and report.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
set -e
here=results/smollm2-icl
for name in pruning_heads pruning_ffns pruning_heads_thresholds pruning_ffns_thresholds layer_pruning \
            layer_pruning_thresholds; do
  [ -e $here/$name.parquet ] || cp figures/smollm2-135m/icl/$name.csv $here/  # a new run's table wins
done
for name in causal_effects causal_vs_random causal_repeated causal_items; do
  cp results/smollm2-135m/causal/$name.parquet results/smollm2-135m/causal/$name.csv $here/ 2>/dev/null || true
done
cp results/smollm2-135m/causal/causal.json $here/ 2>/dev/null || true
.venv/bin/interp figures --results $here --formats html,png
.venv/bin/interp report --results $here --out figures/smollm2-135m/report.html
