#!/usr/bin/env bash
# Runs `coalition bench-settlement` under a time bound (the whole run must stay well under 15
# minutes on a 2-core machine) and prints the machine it ran on. Usage: bench-settlement.sh BIN [FLAGS...]
set -euo pipefail
bin=${1:?usage: bench-settlement.sh BIN [FLAGS...]}
shift
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: $bin bench-settlement $*"
exec timeout --signal=INT --kill-after=60s "${BENCH_SETTLEMENT_TIMEOUT:-14m}" "$bin" bench-settlement "$@"
