#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for tests/test_slurm_cluster.py (and for trying profiles/slurm):
# Debian's slurmctld, slurmd, slurmdbd (accounting in a local MariaDB) and munge, 2 CPUs, no GPU,
# partitions `main` (default) and `wsss`, accounts `other` (root's default) and `wsss`.
#
#   sudo bash tests/slurm/start_cluster.sh
#
# Installs what is missing, writes /etc/slurm/{slurm,slurmdbd}.conf from tests/slurm/*.conf.in, starts
# the daemons that are not running (restarts those whose configuration changed) and waits until `sinfo`
# shows the node up. A second call finds everything running and only checks it (1.8 s measured).
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd}.log, /var/log/mysql/wsss-slurm.log.
# tests/slurm/stop_cluster.sh stops the daemons this script started (it lists them in $STARTED).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST="$(hostname -s)"
MARKER="# written by tests/slurm/start_cluster.sh"
CLUSTER=wsss-test
ACCOUNTS=(other wsss)   # `other` is the users' default account: a job must ask for `wsss` (-A) to get it
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
WAIT_S=60
STARTED=/run/wsss-test-cluster.started   # one daemon a line, in the order started

say() { echo "start_cluster: $*"; }
die() { echo "start_cluster: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s; stop with the log to read if it never succeeds
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s"
        sleep 0.5
    done
}

alive() {  # alive PIDFILE: the daemon named in PIDFILE runs (not another process that got its old pid)
    [[ -s $1 ]] || return 1
    local pid
    pid="$(cat "$1")"
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$(basename "$1" .pid)" ]]
}

stop() {  # stop PIDFILE: end the daemon named in PIDFILE and wait for it
    alive "$1" || return 0
    local pid
    pid="$(cat "$1")"
    kill "$pid"
    wait_for 30 "the end of process $pid ($1)" bash -c "! kill -0 $pid"
}

[[ $(id -u) == 0 ]] || die "run it as root (it installs Debian packages and starts daemons): sudo bash $0"

# ------------------------------------------------------------------------------------------ packages
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ------------------------------------------------------------------------------------- configuration
changed=()
install_config() {  # install_config TEMPLATE TARGET OWNER MODE: write TARGET if its content differs
    local template=$1 target=$2 owner=$3 mode=$4 rendered
    rendered="$(sed "s/@HOST@/$HOST/g" "$template")"
    if [[ -e $target ]] && ! grep -qF "$MARKER" "$target"; then
        die "$target exists and was not written by this script: move it away to use the test cluster here"
    fi
    if [[ ! -e $target ]] || [[ $(cat "$target") != "$rendered" ]]; then
        local temporary="$target.tmp.$$"
        printf '%s\n' "$rendered" >"$temporary"
        chown "$owner" "$temporary"
        chmod "$mode" "$temporary"
        mv -f "$temporary" "$target"
        changed+=("$(basename "$target")")
    fi
}
mkdir -p /etc/slurm /run/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
started() { grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >>"$STARTED"; }
chown slurm:slurm /run/slurm /var/log/slurm /var/lib/slurm/slurmctld
install_config "$HERE/slurm.conf.in" /etc/slurm/slurm.conf root:root 644
install_config "$HERE/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf slurm:slurm 600
is_changed() { [[ " ${changed[*]} " == *" $1 "* ]]; }

# --------------------------------------------------------------------------------------------- munge
mkdir -p /run/munge && chown munge:munge /run/munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force  # --force: past a socket left by a killed munged
    started munged
    wait_for "$WAIT_S" "munged (see /var/log/munge/munged.log)" bash -c "munge -n | unmunge"
fi

# ------------------------------------------------------------------------------------------- MariaDB
if ! mysqladmin --silent ping >/dev/null 2>&1; then
    say "starting MariaDB"
    mkdir -p /run/mysqld /var/log/mysql && chown mysql:mysql /run/mysqld /var/log/mysql
    # only the Unix socket: nothing listens on a network port
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking --log-error=/var/log/mysql/wsss-slurm.log \
        </dev/null >/dev/null 2>&1 &
    started mariadbd
    wait_for "$WAIT_S" "MariaDB (see /var/log/mysql/wsss-slurm.log)" mysqladmin --silent ping
fi
mysql --batch <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ------------------------------------------------------------------------------------------ slurmdbd
if is_changed slurmdbd.conf; then stop /run/slurm/slurmdbd.pid; fi
if ! alive /run/slurm/slurmdbd.pid; then
    say "starting slurmdbd"
    /usr/sbin/slurmdbd
    started slurmdbd
fi
wait_for "$WAIT_S" "slurmdbd (see /var/log/slurm/slurmdbd.log)" sacctmgr --noheader list cluster

# cluster, accounts and the users who submit (root, and the user behind sudo)
if [[ -z $(sacctmgr --noheader --parsable2 list cluster "$CLUSTER" format=cluster) ]]; then
    sacctmgr --immediate add cluster "$CLUSTER" >/dev/null
fi
for account in "${ACCOUNTS[@]}"; do
    if [[ -z $(sacctmgr --noheader --parsable2 list account "$account" format=account) ]]; then
        sacctmgr --immediate add account "$account" cluster="$CLUSTER" description="test account" organization=wsss >/dev/null
    fi
done
users=(root)
[[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]] && users+=("$SUDO_USER")
for user in "${users[@]}"; do
    for account in "${ACCOUNTS[@]}"; do
        if [[ -z $(sacctmgr --noheader --parsable2 list association user="$user" account="$account" format=user) ]]; then
            sacctmgr --immediate add user "$user" account="$account" defaultaccount="${ACCOUNTS[0]}" cluster="$CLUSTER" >/dev/null
        fi
    done
done

# ------------------------------------------------------------------------------ slurmctld and slurmd
if is_changed slurm.conf; then
    stop /run/slurm/slurmd.pid
    stop /run/slurm/slurmctld.pid
fi
if ! alive /run/slurm/slurmctld.pid; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
    started slurmctld
fi
wait_for "$WAIT_S" "slurmctld (see /var/log/slurm/slurmctld.log)" scontrol ping
if ! alive /run/slurm/slurmd.pid; then
    say "starting slurmd"
    /usr/sbin/slurmd
    started slurmd
fi

node_up() {
    local state
    state="$(sinfo --noheader --nodes="$HOST" --format=%T 2>/dev/null | head -n 1)"
    [[ $state == idle || $state == mixed || $state == allocated || $state == completing ]]
}
deadline=$((SECONDS + WAIT_S))
until node_up; do
    state="$(sinfo --noheader --nodes="$HOST" --format=%T 2>/dev/null | head -n 1)"
    if [[ $state == drain* || $state == down* ]]; then  # left down by an earlier run or a restart
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    fi
    ((SECONDS < deadline)) || die "node $HOST is '$state', not idle, after ${WAIT_S}s (see /var/log/slurm/slurmd.log)"
    sleep 0.5
done
sinfo
