#!/bin/sh
# vllm-wake.sh PORT MODEL [VLLM-ARGS...]: make the vLLM server for $LLMUX_MODEL
# on 127.0.0.1:PORT serve. If it is up, wake it from sleep mode; if not (first
# wake, or after a crash), start it with sleep mode enabled. Exit 0 once it
# serves, awake.
set -eu
. "$(dirname "$0")/lib.sh"
port=$1
model=$2
shift 2
base="http://127.0.0.1:$port"

if http_ok "$base/health"; then
    if curl -sf --max-time 5 "$base/is_sleeping" | grep -q '"is_sleeping": *true'; then
        curl -sSf -o /dev/null --max-time 600 -X POST "$base/wake_up"
    fi
else
    start_server "vllm-$port" env VLLM_SERVER_DEV_MODE=1 \
        vllm serve "$model" --enable-sleep-mode --served-model-name "$LLMUX_MODEL" \
        --host 127.0.0.1 --port "$port" "$@"
    wait_http "$base/health" "${WAIT_SECS:-900}" "$(server_pgid "vllm-$port")"
fi
if ! curl -sf --max-time 5 "$base/is_sleeping" | grep -q '"is_sleeping": *false'; then
    echo "vLLM on port $port does not say it is awake" >&2
    exit 1
fi
