#!/bin/sh
# alive.sh PORT: exit 0 if the fake backend that wake.sh started on PORT is
# running and answers /health. Another process answering on PORT does not
# count: llmux would adopt it, and sleep.sh could not stop it.
set -eu
. "$(dirname "$0")/common.sh"

if ! healthy; then
    echo "$0: no answer from http://127.0.0.1:$port/health" >&2
    exit 1
fi
if ! recorded >/dev/null; then
    echo "$0: port $port answers, but not from a backend started by wake.sh" \
        "(no live pid in $pidfile)" >&2
    exit 1
fi
