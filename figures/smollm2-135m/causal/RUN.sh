#!/bin/sh
# Issue 17's causal test on SmolLM2-135M: the issue's grid (14 tasks, 0 and 5 shots, k = 1, 5, 10, 20%, zero and
# mean ablation, rankings prefix matching, copying, own importance, 5 random draws, 40 items a task).
# Resumable across sessions (finished cells are kept in cells/ and repeated/ here); see ../../CAUSAL.sh.
TASKS=${TASKS:-all} SHOTS=${SHOTS:-5,0} PERCENTS=${PERCENTS:-1,5,10,20} exec "$(dirname "$0")/../../CAUSAL.sh" smollm2-135m
