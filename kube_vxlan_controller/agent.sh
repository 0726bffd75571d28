#!/bin/sh
# kube-vxlan-controller agent: the main process of the agent containers (init and sidecar).
#
# It does nothing but wait: the controller execs `ip`/`bridge` commands in this container (it holds
# NET_ADMIN). When the controller is done with the init agent it sends TERM to PID 1 (this script)
# and the pod proceeds; the contract is "exit 0 on TERM". Older controllers instead touch
# /run/terminate, so the file appearing also ends the agent with 0.
#
# POSIX sh (dash, busybox, bash). As PID 1 a signal without a handler is ignored, hence the trap.
# `sleep N & wait $!` rather than `sleep N`: the shell runs a trap only after its foreground command
# returns, but `wait` is interrupted by the signal at once.

TERMINATE_FILE="${AGENT_TERMINATE_FILE:-/run/terminate}"
# How often the file is looked for; TERM ends the agent at once whatever this is.
POLL_SECONDS="${AGENT_POLL_SECONDS:-1}"
sleeper=""

finish() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    echo "agent: $1, exiting"
    exit 0
}

trap 'finish "got TERM"' TERM
trap 'finish "got INT"' INT

# A file left over from an earlier run must not end this one before the controller has done its work.
rm -f "$TERMINATE_FILE" 2>/dev/null

echo "agent: waiting for TERM (or $TERMINATE_FILE)"
while :; do
    if [ -e "$TERMINATE_FILE" ]; then
        finish "$TERMINATE_FILE appeared"
    fi
    sleep "$POLL_SECONDS" &
    sleeper=$!
    wait "$sleeper"
    sleeper=""
done
