#!/bin/sh
# Issue 15 on SmolLM2-135M: the abstract task it learns at 5 shots (word_categories_4way: 0.49 vs chance 0.25)
# and the two SUL tasks; k = 1% and 3% (3 and 8 heads), 60 items. TASKS=abstract,sul:sentiment,sul:topic adds
# the four abstract tasks it does not learn.
TASKS=${TASKS:-word_categories_4way,sul:topic,sul:sentiment} exec "$(dirname "$0")/../../CROSBIE.sh" smollm2-135m
