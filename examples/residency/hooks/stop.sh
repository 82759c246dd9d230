#!/bin/sh
# stop.sh PORT: stop the server that start.sh started for PORT, with everything
# it started; exit 0 once all of it is gone (SIGTERM, then SIGKILL after
# ${STOP_SECS:-60} seconds). Exits 0 if it was not running.
set -eu
. "$(dirname "$0")/lib.sh"
stop_server "port-$1" "${STOP_SECS:-60}"
