#!/bin/sh
# vllm-sleep.sh PORT: put the vLLM server on 127.0.0.1:PORT into sleep mode
# level 1 (weights to CPU RAM, KV cache dropped). A server that does not answer
# is stopped instead, so it cannot hold GPU memory; the next wake starts it.
set -eu
. "$(dirname "$0")/lib.sh"
port=$1
base="http://127.0.0.1:$port"

if http_ok "$base/health"; then
    curl -sSf -o /dev/null --max-time 600 -X POST "$base/sleep?level=1"
    if ! curl -sf --max-time 5 "$base/is_sleeping" | grep -q '"is_sleeping": *true'; then
        echo "vLLM on port $port does not say it is asleep" >&2
        exit 1
    fi
else
    stop_server "vllm-$port" 60
fi
