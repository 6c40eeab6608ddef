#!/usr/bin/env bash
# slurm_local.sh -- a private, throw-away, single-node SLURM cluster for tests.
#
# Usage:
#   scripts/slurm_local.sh start  [STATE_DIR]   # default STATE_DIR: a new `mktemp -d`
#   scripts/slurm_local.sh status STATE_DIR
#   scripts/slurm_local.sh stop   STATE_DIR
#
# What it runs: one munged, one slurmctld and one slurmd (this host, `hostname -s`,
# is both controller and the only node, partition `debug`), all as the calling
# user (SlurmUser=SlurmdUser=root when run as root; a non-root user works too
# once the packages are installed, its jobs then run only as that user), all
# daemonized in the background (pids recorded in STATE_DIR/pids).  Every
# config, key, socket, pid, log, state and spool file lives in STATE_DIR; the
# daemons listen on two free TCP ports picked at start, so several clusters
# (different STATE_DIRs) can run side by side, also next to a system-wide
# SLURM/munge.
#
# How tests use it:
#   out=$(bash scripts/slurm_local.sh start "$dir")   # exit 3 => skip (reason on stderr)
#   export "$(tail -n1 <<<"$out")"                    # SLURM_CONF=$dir/slurm.conf
#   sbatch -p debug -c 1 -t 1 -o "$dir/%j.out" --wrap 'hostname'
#   ...
#   bash scripts/slurm_local.sh stop "$dir"           # cancels jobs, stops daemons
# `start` prints progress on stderr and exactly one line on stdout, last:
# `SLURM_CONF=<STATE_DIR>/slurm.conf`.  Every slurm client (sbatch, squeue,
# scontrol, ...) must see that SLURM_CONF in its environment.
#
# Exit codes: 0 ok; 1 failure (daemon did not come up, etc.: logs' tails are
# printed on stderr); 2 usage; 3 SLURM cannot be made available here (not
# root, no apt-get, no network, ...) -- one line on stderr says why; tests
# skip on 3 and fail on any other non-zero code.
#
# What it changes on the machine: only packages.  When slurmctld, slurmd,
# sbatch or munged are missing, `start` runs (as root)
#   DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
# (and `apt-get update` first only if that fails).  The packages' own
# maintainer scripts put their default files in /etc (e.g. /etc/munge/munge.key)
# as any install does; this script writes nothing in /etc, and it keeps the
# packages' init scripts from starting system daemons during the install (it
# adds a temporary /usr/sbin/policy-rc.d that denies service starts only when
# none exists, and removes it again right after).  A lock file
# ${TMPDIR:-/tmp}/slurm_local.install.lock serialises parallel installs.
# No systemd is needed or used.
#
# Environment knobs (optional):
#   SLURM_LOCAL_CRED_EXPIRE  AuthInfo cred_expire seconds (default 5, the
#                            smallest slurm accepts; slurm's default is 120).
#                            A requeued job is held (Reason=BeginTime) until
#                            cred_expire + 1 s after the requeue, so it runs
#                            again ~6-7 s later instead of ~122 s.
#   SLURM_LOCAL_TIMEOUT      seconds `start` waits for the node to be idle (60).
set -euo pipefail

PROG=slurm_local.sh
export PATH="${PATH:-/usr/bin:/bin}:/usr/sbin:/sbin"
# Do not let a caller's SLURM_CONF (maybe another private cluster) leak in.
unset SLURM_CONF

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    printf 'usage: %s start [STATE_DIR] | stop STATE_DIR | status STATE_DIR\n' "$0" >&2
    exit 2
}

DAEMONS=(slurmd slurmctld munged)   # stop order

# ----------------------------------------------------------------- install --
missing_cmds() {
    local c missing=()
    for c in slurmctld slurmd sbatch munged; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    printf '%s' "${missing[*]:-}"
}

# Exit 3 with a one-line reason on stderr (tests skip on that).
unavailable() {
    printf '%s: SLURM unavailable: %s\n' "$PROG" "$*" >&2
    [[ -n "${CREATED_STATE_DIR:-}" ]] && rm -rf -- "$CREATED_STATE_DIR"
    exit 3
}

# A short reason from an apt log: a network error if there is one, else the last error.
apt_reason() {
    local net
    net=$(grep -o -m1 -E "(Temporary failure resolving|Could not resolve|Could not connect to|Unable to connect to|Network is unreachable|Connection timed out)[^[:cntrl:]]*" \
        "$1" 2>/dev/null | head -n1 || true)
    if [[ -n "$net" ]]; then
        printf 'no network? %s' "$net"
    else
        grep -E '^(E:|W:|Err)' "$1" 2>/dev/null | tail -n1 | tr -s '[:space:]' ' ' | sed 's/ $//' || true
    fi
}

POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
remove_policy() {   # remove our temporary policy-rc.d (and only ours)
    if [[ -n "$ADDED_POLICY" ]] && grep -qs "temporary, by $PROG" "$POLICY"; then
        rm -f "$POLICY"
    fi
    ADDED_POLICY=""
}

ensure_installed() {
    local missing log rc
    missing=$(missing_cmds)
    [[ -z "$missing" ]] && return 0
    [[ "$(id -u)" == 0 ]] || unavailable "missing $missing and not root, cannot apt-get install slurm-wlm munge"
    command -v apt-get >/dev/null 2>&1 || unavailable "missing $missing and no apt-get on this machine"

    log="$STATE_DIR/install.log"
    exec 9>"${TMPDIR:-/tmp}/slurm_local.install.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w 900 9 || unavailable "timed out waiting for another slurm_local.sh install"
    fi
    missing=$(missing_cmds)          # a parallel run may have installed it
    if [[ -n "$missing" ]]; then
        # Quiet until done: on failure, stderr gets only the one reason line.
        local t0=$SECONDS
        if [[ ! -e "$POLICY" ]]; then   # keep init scripts from starting daemons
            trap 'remove_policy' EXIT
            trap 'remove_policy; exit 130' INT TERM HUP
            ADDED_POLICY=1
            printf '#!/bin/sh\n# temporary, by %s\nexit 101\n' "$PROG" >"$POLICY"
            chmod 0755 "$POLICY"
        fi
        export DEBIAN_FRONTEND=noninteractive
        local apt=(apt-get -y -q -o DPkg::Lock::Timeout=600)
        rc=0
        "${apt[@]}" install --no-install-recommends slurm-wlm munge >"$log" 2>&1 || rc=$?
        if [[ $rc != 0 ]]; then
            echo "== $PROG: install failed, running apt-get update and retrying" >>"$log"
            if ! "${apt[@]}" update >>"$log" 2>&1; then
                remove_policy
                unavailable "apt-get update failed: $(apt_reason "$log")"
            fi
            rc=0
            "${apt[@]}" install --no-install-recommends slurm-wlm munge >>"$log" 2>&1 || rc=$?
        fi
        remove_policy
        [[ $rc == 0 ]] || unavailable "apt-get install slurm-wlm munge failed: $(apt_reason "$log")"
        missing=$(missing_cmds)
        [[ -z "$missing" ]] || unavailable "still missing after install: $missing"
        say "installed slurm-wlm munge in $((SECONDS - t0)) s (log: $log)"
    fi
    exec 9>&-
}

# ----------------------------------------------------------------- helpers --
pidfile_of() { printf '%s/pids/%s.pid' "$STATE_DIR" "$1"; }

# Print the recorded pid of daemon $1 if that process is alive and its
# /proc/<pid>/cmdline still names that daemon and this STATE_DIR.
live_pid() {
    local name=$1 f pid argv0 cmd
    f=$(pidfile_of "$name")
    [[ -r "$f" ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
    cmd=$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null) || return 1
    argv0=${cmd%% *}
    [[ "${argv0##*/}" == "$name" && "$cmd" == *"$STATE_DIR/"* ]] || return 1
    printf '%s\n' "$pid"
}

slurm_env() { SLURM_CONF="$STATE_DIR/slurm.conf" timeout "${2:-20}" "$1" "${@:3}"; }

free_ports() {   # print two free TCP ports
    if command -v python3 >/dev/null 2>&1; then
        python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
        return
    fi
    local used p a=0 out=()   # fallback: random ports not listed as listening
    used=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
    while ((${#out[@]} < 2 && a++ < 1000)); do
        p=$((20000 + RANDOM % 30000))
        grep -qx "$p" <<<"$used" || [[ " ${out[*]:-} " == *" $p "* ]] || out+=("$p")
    done
    printf '%s %s\n' "${out[@]}"
}

print_logs() {
    local f
    for f in "$STATE_DIR"/log/munged.log "$STATE_DIR"/log/slurmctld.log "$STATE_DIR"/log/slurmd.log \
             "$STATE_DIR"/log/*.stderr; do
        [[ -s "$f" ]] || continue
        printf -- '----- tail of %s -----\n' "$f" >&2
        tail -n 25 "$f" >&2 || true
    done
}

start_failed() {
    say "error: $*"
    print_logs
    do_stop >/dev/null 2>&1 || true
    exit 1
}

wait_for() {   # wait_for SECONDS CMD...: poll CMD every 0.5 s
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.5
    done
}

# ------------------------------------------------------------------- start --
write_conf() {
    local host=$1 ctld_port=$2 slurmd_port=$3 user node_line cpus mem cred_expire
    user=$(id -un)
    # slurm 22.05 rejects cred_expire < 5 ("AuthInfo=cred_expire=N invalid")
    # and then silently uses 120 s.
    cred_expire=${SLURM_LOCAL_CRED_EXPIRE:-5}
    if ! [[ "$cred_expire" =~ ^[0-9]+$ ]] || ((cred_expire < 5)); then
        die "SLURM_LOCAL_CRED_EXPIRE=$cred_expire: must be an integer >= 5"
    fi
    # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
    node_line=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=' || true)
    node_line=$(tr ' ' '\n' <<<"$node_line" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ' || true)
    if [[ "$node_line" != *CPUs=* ]]; then
        cpus=$(nproc)
        mem=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
        node_line="CPUs=$cpus RealMemory=$mem"
    fi
    # Lower RealMemory by 10 % so that a slightly different reading at slurmd
    # registration never drains the node ("Low RealMemory").
    mem=$(grep -o 'RealMemory=[0-9]*' <<<"$node_line" | cut -d= -f2)
    [[ -n "$mem" ]] && node_line=${node_line/RealMemory=$mem/RealMemory=$((mem * 9 / 10))}

    cat >"$STATE_DIR/slurm.conf" <<EOF
# Written by $PROG for a private test cluster; everything lives in $STATE_DIR.
ClusterName=localtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE_DIR/munge/munge.socket,cred_expire=$cred_expire
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=30
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host ${node_line}State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

node_idle() {
    local st
    st=$(slurm_env sinfo 10 -h -N -o '%t' 2>/dev/null) || return 1
    [[ "$st" == idle ]]
}

munge_ok() {
    munge -n -S "$STATE_DIR/munge/munge.socket" | unmunge -S "$STATE_DIR/munge/munge.socket"
}

# Start daemon: run_daemon NAME PIDFILE_WRITTEN_BY_DAEMON CMD...
run_daemon() {
    local name=$1 dpid=$2 pid; shift 2
    rm -f "$dpid"
    (cd "$STATE_DIR" && exec setsid "$@" </dev/null >>"$STATE_DIR/log/$name.stderr" 2>&1) ||
        start_failed "$name exited with code $?"
    wait_for 30 test -s "$dpid" || start_failed "$name wrote no pid file $dpid"
    pid=$(tr -dc '0-9' <"$dpid")
    printf '%s\n' "$pid" >"$(pidfile_of "$name")"
    live_pid "$name" >/dev/null || start_failed "$name (pid $pid) is not running"
}

do_start() {
    local host ctld_port slurmd_port d t0=$SECONDS
    ensure_installed

    if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null && live_pid munged >/dev/null; then
        say "already running in $STATE_DIR"
        printf 'SLURM_CONF=%s/slurm.conf\n' "$STATE_DIR"
        return 0
    fi
    do_stop >/dev/null 2>&1 || true    # leftovers of a half-dead earlier run

    for d in munge run state spool log pids; do
        rm -rf -- "${STATE_DIR:?}/$d"
        mkdir -m 0700 "$STATE_DIR/$d"
    done
    # munged insists that every user can reach its socket (x on the dirs).
    chmod 0711 "$STATE_DIR/munge"

    # munge key: private to this cluster, mode 0400.
    local key=$STATE_DIR/munge/munge.key
    if ! mungekey --create --keyfile="$key" >/dev/null 2>&1; then
        rm -f "$key"
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chmod 0400 "$key"

    host=$(hostname -s)
    read -r ctld_port slurmd_port <<<"$(free_ports)"
    [[ -n "${slurmd_port:-}" ]] || die "could not find two free TCP ports"
    write_conf "$host" "$ctld_port" "$slurmd_port"
    export SLURM_CONF="$STATE_DIR/slurm.conf"

    say "starting munged, slurmctld (port $ctld_port), slurmd (port $slurmd_port) in $STATE_DIR"
    run_daemon munged "$STATE_DIR/run/munged.pid" "$(command -v munged)" \
        --key-file="$key" --socket="$STATE_DIR/munge/munge.socket" \
        --pid-file="$STATE_DIR/run/munged.pid" --log-file="$STATE_DIR/log/munged.log" \
        --seed-file="$STATE_DIR/munge/munged.seed" --num-threads=2
    wait_for 15 munge_ok || start_failed "munged does not answer on $STATE_DIR/munge/munge.socket"

    run_daemon slurmctld "$STATE_DIR/run/slurmctld.pid" "$(command -v slurmctld)" -f "$SLURM_CONF" -c
    run_daemon slurmd "$STATE_DIR/run/slurmd.pid" "$(command -v slurmd)" -f "$SLURM_CONF" -N "$host"

    wait_for "${SLURM_LOCAL_TIMEOUT:-60}" node_idle ||
        start_failed "node $host not idle after ${SLURM_LOCAL_TIMEOUT:-60} s ($(slurm_env sinfo 10 -h -N -o '%t %E' 2>&1 | head -n1))"
    say "cluster up in $((SECONDS - t0)) s: $(slurm_env sinfo 10 -h -o '%P %a %D %t %N' | head -n1)"
    printf 'SLURM_CONF=%s\n' "$SLURM_CONF"
}

# -------------------------------------------------------------------- stop --
alive() {   # alive PID: exists and is not a zombie waiting for init to reap it
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/"$1"/status 2>/dev/null) || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

wait_gone() {   # wait_gone SECONDS PID
    local end=$((SECONDS + $1))
    while alive "$2"; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
}

# slurmstepd processes (job steps) started by this cluster's slurmd: they
# carry SLURM_CONF=<this STATE_DIR>/slurm.conf in their environment.
own_stepds() {
    local p
    for p in /proc/[0-9]*; do
        [[ "$(head -c 11 "$p/cmdline" 2>/dev/null | tr '\0' ' ')" == slurmstepd* ]] || continue
        tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$STATE_DIR/slurm.conf" &&
            printf '%s\n' "${p#/proc/}"
    done
    return 0
}

no_jobs() {
    local out
    out=$(slurm_env squeue 10 -h -o '%A') || return 1
    [[ -z "$out" ]]
}

descendants() {   # all descendants of PID, one a line
    local k
    for k in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        printf '%s\n' "$k"
        descendants "$k"
    done
}

do_stop() {
    local name pid jobs p
    [[ -d "$STATE_DIR" ]] || { say "no state dir $STATE_DIR: nothing to stop"; return 0; }
    if live_pid slurmctld >/dev/null && [[ -r "$STATE_DIR/slurm.conf" ]]; then
        jobs=$(slurm_env squeue 15 -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)
        if [[ -n "${jobs// /}" ]]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            slurm_env scancel 15 --full $jobs || true
            # KillWait=10: SIGKILL follows SIGTERM after 10 s; give it a bit more.
            wait_for 20 no_jobs ||
                say "warning: jobs still listed after scancel: $(slurm_env squeue 10 -h 2>&1 | tr '\n' ';')"
        fi
    fi
    local stopped=() kids k
    for name in "${DAEMONS[@]}"; do
        pid=$(live_pid "$name") || continue
        # helpers forked by the daemon (slurmctld's "slurmctld: slurmscriptd")
        kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone 10 "$pid"; then
            say "$name (pid $pid) still alive after 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone 5 "$pid" || say "warning: $name (pid $pid) survived SIGKILL"
        fi
        stopped+=("$pid")
        for k in $kids; do
            stopped+=("$k")
            wait_gone 5 "$k" && continue
            [[ "$(tr '\0' ' ' </proc/"$k"/cmdline 2>/dev/null)" == "$name:"* ]] || continue
            say "killing leftover $name helper pid $k"
            kill -KILL "$k" 2>/dev/null || true
        done
    done
    # Job steps that survived (e.g. slurmctld had crashed, so no scancel):
    # kill each leftover slurmstepd together with the job's processes under it.
    for p in $(own_stepds); do
        kids=$(descendants "$p")
        say "killing leftover slurmstepd pid $p and its processes: ${kids//$'\n'/ }"
        kill -STOP "$p" 2>/dev/null || true
        for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
        kill -KILL "$p" 2>/dev/null || true
        stopped+=("$p")
    done
    # Some inits (this VM's) reap orphaned zombies late; wait (<= 5 s) until
    # the exited daemons have left the process table, so `ps` shows nothing.
    local end=$((SECONDS + 5))
    for p in "${stopped[@]}"; do
        while [[ -e /proc/$p ]] && ((SECONDS < end)); do sleep 0.1; done
    done
    rm -f "$STATE_DIR"/pids/*.pid "$STATE_DIR"/run/*.pid "$STATE_DIR"/munge/munge.socket*
    return 0
}

# ------------------------------------------------------------------ status --
do_status() {
    local name pid rc=0
    for name in munged slurmctld slurmd; do
        if pid=$(live_pid "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"; rc=1
        fi
    done
    if live_pid slurmctld >/dev/null; then
        slurm_env sinfo 15 || rc=1
        slurm_env squeue 15 || rc=1
    fi
    return "$rc"
}

# -------------------------------------------------------------------- main --
cmd=${1:-}
(($# <= 2)) || usage
CREATED_STATE_DIR=""
case "$cmd" in
    start)
        if [[ -n "${2:-}" ]]; then
            mkdir -p -- "$2"
            STATE_DIR=$(cd -- "$2" && pwd -P)
        else
            STATE_DIR=$(cd -- "$(mktemp -d "${TMPDIR:-/tmp}/slurm_local.XXXXXX")" && pwd -P)
            CREATED_STATE_DIR=$STATE_DIR
        fi
        # World-readable (not writable): slurm clients of any user read
        # slurm.conf, and munged wants its socket's path traversable by all.
        chmod 0755 "$STATE_DIR"
        do_start
        ;;
    stop | status)
        [[ -n "${2:-}" ]] || usage
        if [[ -d "$2" ]]; then STATE_DIR=$(cd -- "$2" && pwd -P); else STATE_DIR=$2; fi
        if [[ $cmd == stop ]]; then do_stop; else do_status; fi
        ;;
    *) usage ;;
esac
