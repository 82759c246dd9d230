# shellcheck shell=sh
# Shared by the demo hooks; sourced, not run. Sets the paths for backend
# PORT ($1) and defines the checks the hooks use.
#
# Environment: PYTHON (default python3) must be able to import llmux;
# TMPDIR (default /tmp) holds each backend's log and pid files.

port=${1:?"usage: $0 PORT"}
case $port in
    '' | *[!0-9]*) echo "$0: PORT must be a number, got: $port" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
state=${TMPDIR:-/tmp}
pidfile="$state/llmux-demo-$port.pid"
# shellcheck disable=SC2034 # used by the scripts that source this file
logfile="$state/llmux-demo-$port.log"

# healthy: does the backend on $port answer GET /health?
healthy() {
    "$python" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "http://127.0.0.1:$port/health" >/dev/null 2>&1
}

# alive PID: is PID a running process (not gone, not a zombie)?
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/stat" ]; then
        [ "$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 1
    fi
    return 0
}

# recorded: print the pid in the pidfile, if that process is alive and (where
# /proc tells) is a fake backend, not an unrelated process that reused the pid.
recorded() {
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\000' ' ' <"/proc/$pid/cmdline" | grep -q llmux.testing.fakebackend ||
            return 1
    fi
    echo "$pid"
}

# goneWithin SECS PID: wait up to SECS seconds for PID to exit.
goneWithin() {
    deadline=$(($(now) + $1))
    while alive "$2"; do
        [ "$(now)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# now: seconds since the epoch.
now() {
    date +%s
}
