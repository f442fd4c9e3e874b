#!/bin/sh
# The Gemma-3-270M report from its tables (a run's where present, else the committed copies).
exec "$(dirname "$0")/../../REPORT.sh" gemma3-270m gemma3-icl
