#!/bin/sh
# wake.sh PORT: start the fake backend for $LLMUX_MODEL on 127.0.0.1:PORT and
# exit 0 once it answers /health. Idempotent: the backend recorded in the
# pidfile, if it is still running, is left alone. Succeeds only when that
# backend (the one recorded, or the one just started) is alive and answers;
# an answer from anything else on the port does not count. Exits non-zero,
# with the reason on stderr, if the port is taken by another process, or if
# the backend dies or does not answer within 15 seconds.
set -eu
. "$(dirname "$0")/common.sh"
model=${LLMUX_MODEL:?"$0: LLMUX_MODEL is not set"}

pid=$(recorded) || pid=
if [ -z "$pid" ]; then
    if healthy; then
        echo "$0: port $port is taken: another process answers" \
            "http://127.0.0.1:$port/health (no backend started by wake.sh" \
            "runs there; see $pidfile)" >&2
        exit 1
    fi
    echo "$(date '+%F %T') wake.sh: starting $model on port $port" >>"$logfile"
    nohup "$python" -m llmux.testing.fakebackend --port "$port" --model "$model" \
        >>"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
fi

# Alive before and after the health check: an answer counts only if our
# backend was running all along (one that failed to bind the port exits).
deadline=$(($(now) + 15))
while :; do
    if ! alive "$pid"; then
        rm -f "$pidfile"
        echo "$0: the backend for $model on port $port exited; from $logfile:" >&2
        tail -n 5 "$logfile" >&2 || true
        exit 1
    fi
    if healthy && alive "$pid"; then
        exit 0
    fi
    if [ "$(now)" -ge "$deadline" ]; then
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        echo "$0: $model did not answer on port $port within 15 s; see $logfile" >&2
        exit 1
    fi
    sleep 0.1
done
