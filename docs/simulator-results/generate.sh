#!/bin/sh
# Regenerates the simulator results shown in docs/policies.md: three
# workloads, each with 2 s, 10 s and 60 s switches, every built-in policy.
#
#   sh docs/simulator-results/generate.sh
#
# From a source tree that is not installed:
#
#   PYTHONPATH=src SIMULATE="python -m llmux.simulation" \
#       sh docs/simulator-results/generate.sh
#
# Each run writes NAME.json (the report) and NAME/ (timeline.svg with every
# policy, and one SVG per policy). The runs are deterministic (seed 1).
set -eu
SIMULATE=${SIMULATE:-llmux simulate}
out=$(dirname "$0")

run() {
    name=$1
    until=$2
    shift 2
    echo "$SIMULATE $* --format json" >&2
    $SIMULATE "$@" --format json --svg "$out/$name" --svg-until "$until" \
        >"$out/$name.json"
}

for secs in 2 10 60; do
    case $secs in
        2) until=300 ;;
        10) until=900 ;;
        60) until=3600 ;;
    esac
    run "interleaved-${secs}s" "$until" --workload interleaved --switch-secs "$secs"
    run "poisson-${secs}s" "$until" --workload poisson --switch-secs "$secs"
    run "batch-chat-${secs}s" "$until" --workload batch-chat --switch-secs "$secs"
done
