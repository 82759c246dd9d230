#!/bin/sh
# start.sh PORT COMMAND...: start COMMAND, a server for $LLMUX_MODEL on
# 127.0.0.1:PORT, unless it is running; exit 0 once it answers on
# ${HEALTH_PATH:-/health}. Fails if another process already answers there, if
# the server exits first, or after ${WAIT_SECS:-600} seconds.
set -eu
. "$(dirname "$0")/lib.sh"
port=$1
shift
url="http://127.0.0.1:$port${HEALTH_PATH:-/health}"
if ! server_running "port-$port" && http_ok "$url"; then
    echo "port $port is taken: $url answers, but start.sh did not start that server" >&2
    exit 1
fi
start_server "port-$port" "$@"
if ! wait_http "$url" "${WAIT_SECS:-600}" "$(server_pgid "port-$port")"; then
    tail -n 5 "$run_dir/port-$port.log" >&2
    echo "$LLMUX_MODEL did not come up on port $port; see $run_dir/port-$port.log" >&2
    exit 1
fi
