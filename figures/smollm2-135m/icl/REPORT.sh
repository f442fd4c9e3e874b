#!/bin/sh
# The SmolLM2 report from its tables (a run's where present, else the committed copies).
exec "$(dirname "$0")/../../REPORT.sh" smollm2-135m smollm2-icl
