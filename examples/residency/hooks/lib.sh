# hooks/lib.sh: helpers for the hook scripts. Source it, don't run it.
# Needs curl, awk and procps' ps.

# Where pid files and server logs go.
run_dir=${LLMUX_RUN_DIR:-/var/tmp/llmux}
mkdir -p "$run_dir"

# group_alive PGID: is a live (not zombie) process left in process group PGID?
group_alive() {
    ps -e -o pgid= -o stat= |
        awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# http_ok URL: does URL answer with a 2xx status within 5 seconds?
http_ok() {
    curl -sf -o /dev/null --max-time 5 "$1"
}

# wait_http URL SECONDS [PGID]: wait until URL answers 2xx. Fail after SECONDS,
# or as soon as process group PGID (the server) has no live process left. With
# PGID, an answer counts only while that group is alive, so a server that failed
# to bind the port does not pass for the process that holds it.
wait_http() {
    deadline=$(($(date +%s) + $2))
    while :; do
        if [ -n "${3:-}" ] && ! group_alive "$3"; then
            echo "the server exited before $1 answered" >&2
            return 1
        fi
        if http_ok "$1" && { [ -z "${3:-}" ] || group_alive "$3"; }; then
            return 0
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "no answer from $1 within $2 s" >&2
            return 1
        fi
        sleep 1
    done
}

# server_running NAME: is server NAME (started by start_server) still running?
server_running() {
    [ -s "$run_dir/$1.pid" ] && group_alive "$(cat "$run_dir/$1.pid")"
}

# start_server NAME COMMAND...: unless server NAME is running, start COMMAND in
# the background, in a process group of its own, with its output appended to
# $run_dir/NAME.log (never to the hook's stdout or stderr, or the hook would not
# end), and record the group id in $run_dir/NAME.pid.
start_server() {
    name=$1
    shift
    if server_running "$name"; then
        return 0
    fi
    echo "$(date '+%F %T') starting: $*" >>"$run_dir/$name.log"
    setsid nohup "$@" >>"$run_dir/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$run_dir/$name.pid"
    # setsid makes the server the leader of its own process group a moment
    # after it starts. Wait for that (at most 5 s, or until it exits), so
    # group_alive finds the group at once.
    tries=0
    while ! group_alive "$pid" && kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
        tries=$((tries + 1))
        sleep 0.1
    done
}

# server_pgid NAME: the process group id recorded for server NAME.
server_pgid() {
    cat "$run_dir/$1.pid"
}

# stop_server NAME SECONDS: SIGTERM server NAME's whole process group, SIGKILL
# what is left after SECONDS; succeed once nothing is left.
stop_server() {
    [ -s "$run_dir/$1.pid" ] || return 0
    pgid=$(cat "$run_dir/$1.pid")
    kill -TERM "-$pgid" 2>/dev/null || true
    deadline=$(($(date +%s) + $2))
    while group_alive "$pgid"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "process group $pgid still running after $2 s; sending SIGKILL" >&2
            kill -KILL "-$pgid" 2>/dev/null || true
            sleep 1
            if group_alive "$pgid"; then
                echo "could not stop process group $pgid" >&2
                return 1
            fi
        fi
        sleep 0.5
    done
    rm -f "$run_dir/$1.pid"
}
