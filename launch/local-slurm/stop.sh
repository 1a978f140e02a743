#!/usr/bin/env bash
# Stop the single-node SLURM that start.sh started (its daemons only, found by their pid files).
# --keep-munge leaves munged running (start.sh uses it to restart SLURM after a config change).
set -euo pipefail

STATE="${BOHB_LOCAL_SLURM_DIR:-/tmp/bohb-local-slurm}"

stop() {
    local name="$1" pidfile="$2" pid
    [[ -s "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        echo "local-slurm: stopping $name (pid $pid)" >&2
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
[[ "${1:-}" == "--keep-munge" ]] || stop munged "$STATE/munge/munged.pid"
