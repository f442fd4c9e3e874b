#!/bin/sh
# Issue 17's causal test on one model, resumable across sessions:
#   TASKS=all SHOTS=5 PERCENTS=10 RANKINGS=prefix_matching,copying,own figures/CAUSAL.sh MODEL
# The top k% heads by each ranking, zero- and mean-ablated, against 5 draws of k random heads, 40 items a task.
# Induction rankings come from the committed figures/MODEL/induction_scores; own importance is each task's
# gradient, computed in the run. Every finished cell is one small keyed JSON file: the ones committed under
# figures/MODEL/causal/cells (and repeated/) are copied in first and the new ones copied back after, so a
# later session (or another machine) carries on where this one stopped. One thread, niced: the 2-core CPU is shared.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" || exit 1
[ $# -eq 1 ] || { echo "usage: [TASKS=..] [SHOTS=..] [PERCENTS=..] [RANKINGS=..] figures/CAUSAL.sh MODEL" >&2; exit 2; }
model=$1 kept=figures/$1/causal out=${OUT:-results/$1/causal}
for part in cells repeated; do
  mkdir -p "$out/causal/$part" && [ -d "$kept/$part" ] && cp -n "$kept/$part"/*.json "$out/causal/$part/" 2>/dev/null
done
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/interp ablate --model "$model" \
  --tasks "${TASKS:-all}" --shots "${SHOTS:-5}" --percents "${PERCENTS:-10}" --ablations zero,mean \
  --rankings "${RANKINGS:-prefix_matching,copying,own}" --n-random 5 --max-items 40 --results "figures/$model" \
  --out "$out" --device cpu
status=$?
for part in cells repeated; do  # the run's cells are the newest (a recomputed cell keeps its name)
  mkdir -p "$kept/$part" && cp "$out/causal/$part"/*.json "$kept/$part/" 2>/dev/null
done
exit $status
