#!/bin/sh
# Issue 15 on Gemma-3-270M: the tasks it learns from 5 demonstrations (results/gemma3-270m/accuracy, 100 items,
# seed 0): word_categories_4way 0.59 (chance 0.25), sul:sentiment 0.66 (0.5), sul:topic 0.51 (0.25); the four
# letter and 2-way tasks stay at chance. 1% and 3% of Gemma's 72 heads are 1 and 2 heads.
TASKS=${TASKS:-word_categories_4way,sul:sentiment,sul:topic} exec "$(dirname "$0")/../../CROSBIE.sh" gemma3-270m
