#!/bin/sh
# sleep.sh PORT: stop the fake backend on PORT and exit 0 once it is gone
# (SIGTERM, then SIGKILL after 10 seconds). Exits 0 if it was not running.
set -eu
. "$(dirname "$0")/common.sh"

pid=$(recorded) || pid=
if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    if ! goneWithin 10 "$pid"; then
        echo "$0: pid $pid ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
        if ! goneWithin 5 "$pid"; then
            echo "$0: could not stop pid $pid" >&2
            exit 1
        fi
    fi
fi
rm -f "$pidfile"
