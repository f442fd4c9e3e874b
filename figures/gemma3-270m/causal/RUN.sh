#!/bin/sh
# Issue 17's causal test on Gemma-3-270M: all 14 tasks at 5 shots, k = 10% (7 of 72 heads), zero and mean
# ablation, rankings prefix matching, copying, own importance, 5 random draws, 40 items a task.
# Resumable across sessions (finished cells are kept in cells/ and repeated/ here); see ../../CAUSAL.sh.
TASKS=${TASKS:-all} SHOTS=${SHOTS:-5} PERCENTS=${PERCENTS:-10} exec "$(dirname "$0")/../../CAUSAL.sh" gemma3-270m
