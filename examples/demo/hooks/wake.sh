#!/bin/sh
# wake.sh PORT: start the fake backend for $LLMUX_MODEL on 127.0.0.1:PORT and
# exit 0 once it answers /health. Idempotent: a backend that is already up
# is left alone. Exits non-zero, with the reason on stderr, if the backend
# dies or does not answer within 15 seconds.
set -eu
. "$(dirname "$0")/common.sh"
model=${LLMUX_MODEL:?"$0: LLMUX_MODEL is not set"}

pid=$(recorded) || pid=
if [ -n "$pid" ] && healthy; then
    exit 0
fi
if [ -z "$pid" ]; then
    echo "$(date '+%F %T') wake.sh: starting $model on port $port" >>"$logfile"
    nohup "$python" -m llmux.testing.fakebackend --port "$port" --model "$model" \
        >>"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
fi

deadline=$(($(now) + 15))
until healthy; do
    if ! alive "$pid"; then
        rm -f "$pidfile"
        echo "$0: the backend for $model on port $port exited; from $logfile:" >&2
        tail -n 5 "$logfile" >&2 || true
        exit 1
    fi
    if [ "$(now)" -ge "$deadline" ]; then
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        echo "$0: $model did not answer on port $port within 15 s; see $logfile" >&2
        exit 1
    fi
    sleep 0.1
done
