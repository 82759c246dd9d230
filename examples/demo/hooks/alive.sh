#!/bin/sh
# alive.sh PORT: exit 0 if the fake backend on PORT answers /health.
set -eu
. "$(dirname "$0")/common.sh"

if ! healthy; then
    echo "$0: no answer from http://127.0.0.1:$port/health" >&2
    exit 1
fi
