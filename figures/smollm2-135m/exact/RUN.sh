#!/bin/sh
# Exact ablation of every head and FFN of SmolLM2-135M beside the gradient estimators and attribution patching
# (issue 17, item 2): TASKS, SHOTS, ABLATION_SHOTS, ABLATIONS as in ../../EXACT.sh. The full design is
# TASKS=all ABLATION_SHOTS=1,5 (about 4 hours of one CPU thread), mean ablation ABLATIONS=mean on three tasks.
exec "$(dirname "$0")/../../EXACT.sh" smollm2-135m
