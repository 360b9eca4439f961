#!/usr/bin/env bash
# Stops the daemons of the test cluster that tests/slurm/start_cluster.sh started (it lists them in
# /run/wsss-test-cluster.started), newest first; daemons that were running before it are left alone.
#
#   sudo bash tests/slurm/stop_cluster.sh
set -euo pipefail

STARTED=/run/wsss-test-cluster.started

say() { echo "stop_cluster: $*"; }

[[ $(id -u) == 0 ]] || { echo "stop_cluster: run it as root: sudo bash $0" >&2; exit 1; }
[[ -s $STARTED ]] || { say "nothing to stop ($STARTED is empty or missing)"; exit 0; }

stop_pid() {  # stop_pid NAME PIDFILE: end the process NAME whose pid PIDFILE holds, and wait up to 30 s
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid="$(cat "$pidfile")"
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 0  # not running (or another process)
    say "stopping $name ($pid)"
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    say "$name ($pid) did not stop within 30 s"
    return 1
}

status=0
for daemon in $(tac "$STARTED"); do
    case $daemon in
        slurmd | slurmctld | slurmdbd) stop_pid "$daemon" "/run/slurm/$daemon.pid" || status=1 ;;
        mariadbd) stop_pid mariadbd /run/mysqld/mysqld.pid || status=1 ;;
        munged) stop_pid munged /run/munge/munged.pid || status=1 ;;
    esac
done
((status)) || rm -f "$STARTED"
exit "$status"
