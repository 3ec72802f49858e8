#!/usr/bin/env bash
# scripts/local-slurm-up.sh - bring up a real, single-node Slurm cluster on this
# machine, so the workflow can be tested with `snakemake --profile profiles/slurm`.
#
# Target: Debian 12 (bookworm), run as root, no systemd, no GPU.
#   * Debian's slurm-wlm 22.05 + munge (authentication)
#   * slurmdbd on MariaDB (socket only, --skip-networking): the Snakemake Slurm
#     executor plugin polls job states with `sacct`, which needs accounting
#   * one fake GPU gres (gpu:fakegpu:1, backed by /dev/null) and
#     select/cons_tres, so `sbatch --gpus=...` jobs are accepted and scheduled
#   * partitions `debug` (default) and `gpu`, both on the single node `localhost`
#
# Usage:   sudo scripts/local-slurm-up.sh        (stop: scripts/local-slurm-down.sh)
#
# Idempotent: if the cluster is already up it changes nothing and returns in ~1 s.
# Daemons run in the foreground of their own session (setsid), so the pid we get
# from `$!` is the daemon itself; every daemon this script starts is recorded in
# $STATE_DIR/<name>.pid as "<pid> <starttime> <comm>" and local-slurm-down.sh
# stops exactly those processes, nothing else.
#
# Environment knobs:
#   LOCAL_SLURM_TIMEOUT      seconds to wait for each daemon / the idle node (60)
#   LOCAL_SLURM_APT_TIMEOUT  seconds to wait for another apt/dpkg to finish (600)
#
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd}.log (+ .out for stderr),
#       /var/log/mysql/error.log, /var/log/munge/munged.log, apt: /var/log/local-slurm-apt.log
set -euo pipefail

TIMEOUT="${LOCAL_SLURM_TIMEOUT:-60}"
APT_TIMEOUT="${LOCAL_SLURM_APT_TIMEOUT:-600}"
STATE_DIR=/run/emorepro-local-slurm      # pid records of the daemons we started
APT_LOG=/var/log/local-slurm-apt.log
CLUSTER=localci
DB_SOCKET=/run/mysqld/mysqld.sock
DB_USER=slurm
DB_PASS=slurmdbd-local    # not a secret: MariaDB listens on a root-only socket, no TCP
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
T0=$(date +%s%N)

log() { printf '[local-slurm-up %5.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }

# die MESSAGE [LOGFILE...]: report, show the tail of the given logs, exit 1.
die() {
  local msg=$1; shift
  log "ERROR: $msg"
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 25 "$f" >&2
  done
  log "logs: /var/log/slurm/ /var/log/mysql/error.log /var/log/munge/munged.log $APT_LOG"
  exit 1
}

# ---------------------------------------------------------------- helpers ---

# starttime PID: field 22 of /proc/PID/stat (clock ticks since boot). Together
# with the pid it identifies a process uniquely, so a recycled pid is never
# mistaken for one of our daemons.
starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }                # drop "pid (comm) ", comm may contain spaces
  set -- $stat                     # now $1 is field 3 (state), so field 22 is $20
  echo "${20}"
}

# ours NAME: true if the daemon we recorded under NAME is still that process.
ours() {
  local rec=$STATE_DIR/$1.pid pid st comm
  [ -s "$rec" ] || return 1
  read -r pid st comm <"$rec" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] && [ "$(starttime "$pid")" = "$st" ]
}

# wait_until SECONDS DESCRIPTION LOGFILE COMMAND...: poll COMMAND (quietly) every
# 0.5 s until it succeeds; die with the log's tail after SECONDS.
wait_until() {
  local secs=$1 desc=$2 logf=$3; shift 3
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${secs}s waiting for $desc" "$logf"
    sleep 0.5
  done
}

# start_daemon NAME LOGFILE COMMAND...: run COMMAND (a daemon in foreground mode)
# in a new session, detached from our stdio, and record its pid.
start_daemon() {
  local name=$1 out=$2; shift 2
  # We are never a process-group leader here, so setsid(1) execs in place and
  # $! is the daemon's own pid (setpriv, used for munged, also execs).
  # 9>&-: the daemon must not inherit our up.lock descriptor, or it would hold
  # the lock for its whole life and block the next call of this script.
  setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
  local pid=$! end=$(( $(date +%s) + 10 ))
  # Wait until the exec chain (bash -> setsid -> [setpriv ->] daemon) is done.
  until [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; do
    [ -d "/proc/$pid" ] || die "$name exited right after start" "$out"
    [ "$(date +%s)" -lt "$end" ] || die "$name (pid $pid) did not exec" "$out"
    sleep 0.1
  done
  echo "$pid $(starttime "$pid") $name" >"$STATE_DIR/$name.pid"
  log "started $name (pid $pid)"
}

# stop_ours NAME: stop a daemon we started (only used when its config changed).
stop_ours() {
  ours "$1" || return 0
  local pid; read -r pid _ <"$STATE_DIR/$1.pid"
  log "config changed: restarting $1 (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && kill -KILL "$pid"
  rm -f "$STATE_DIR/$1.pid"
}

munge_ok()   { munge -n </dev/null | unmunge >/dev/null; }
mariadb_ok() { mariadb-admin --socket="$DB_SOCKET" ping; }
dbd_ok()     { sacctmgr -n -P show cluster format=cluster; }
ctld_ok()    { scontrol ping | grep -q 'is UP'; }
node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -n1; }
# a daemon of this kind running, whoever started it (read-only check)
running()    { pgrep -x "$1" >/dev/null; }

# ------------------------------------------------------------ preflight ---
[ "$(id -u)" = 0 ] || { echo "local-slurm-up: must run as root" >&2; exit 1; }
grep -q '^12' /etc/debian_version 2>/dev/null ||
  log "warning: written for Debian 12, found $(cat /etc/debian_version 2>/dev/null || echo non-Debian)"
mkdir -p "$STATE_DIR"
# Serialise concurrent callers (e.g. two test sessions): the second one waits,
# then finds the cluster up and does nothing.
exec 9>"$STATE_DIR/up.lock"
flock -w $(( APT_TIMEOUT + 120 )) 9 || die "another local-slurm-up.sh holds $STATE_DIR/up.lock"

# ------------------------------------------------------------- packages ---
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt log: $APT_LOG)"
  t_apt=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start services themselves (there is no systemd and we
  # start every daemon below); Docker images ship a policy-rc.d that says so, add
  # a temporary one if this machine has none.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # DPkg::Lock::Timeout makes apt wait (bounded) for another apt/dpkg run.
  apt_install() {
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout="$APT_TIMEOUT" \
      "${missing[@]}" >>"$APT_LOG" 2>&1
  }
  if ! apt_install; then
    # Most likely stale or missing package lists. `apt-get update` takes the lists
    # lock, for which older apt ignores DPkg::Lock::Timeout: retry, bounded.
    end=$(( $(date +%s) + APT_TIMEOUT ))
    until apt-get update -q -o DPkg::Lock::Timeout="$APT_TIMEOUT" >>"$APT_LOG" 2>&1; do
      [ "$(date +%s)" -lt "$end" ] || die "apt-get update kept failing" "$APT_LOG"
      sleep 5
    done
    apt_install || die "apt-get install ${missing[*]} failed" "$APT_LOG"
  fi
  log "packages installed in $(( $(date +%s) - t_apt ))s"
fi

# ---------------------------------------------------------------- config ---
mkdir -p /etc/slurm /run/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
# Describe the node as slurmd detects it, but under the name `localhost` (the
# machine's hostname may be anything) and with 90% of its RAM: a RealMemory above
# what slurmd measures would put the node in DRAIN.
hw=$(slurmd -C | head -n1)
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
node_hw=$(sed -e 's/^NodeName=[^ ]* *//' -e "s/RealMemory=[0-9]*/RealMemory=$(( mem * 9 / 10 ))/" <<<"$hw")

slurm_conf=$(cat <<EOF
# Generated by emorepro scripts/local-slurm-up.sh: single node, no systemd, no cgroups.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
# Without cgroups: track job processes by parent pid, no task affinity/limits.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
# cons_tres is needed for --gpus; schedule cores and memory.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job without --mem would otherwise hold all the node's memory and serialise jobs.
DefMemPerCPU=1000
ReturnToService=2
SchedulerType=sched/backfill
# Keep finished jobs visible to squeue for 5 min (the plugin's squeue mode needs it).
MinJobAge=300
# Short grace period between SIGTERM and SIGKILL on scancel / time limit.
KillWait=5
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# Record gres/gpu in accounting so "sacct -o ReqTRES,AllocTRES" shows GPU requests,
# and the job comment (the plugin sets it to rule_<name>) so "sacct -o Comment" maps
# Slurm jobs back to rules.
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=localhost NodeAddr=127.0.0.1 Gres=gpu:fakegpu:1 $node_hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
EOF
)
# The fake GPU: a gres needs a device file; /dev/null is enough for scheduling.
gres_conf=$'# Generated by emorepro scripts/local-slurm-up.sh\nNodeName=localhost Name=gpu Type=fakegpu File=/dev/null'
slurmdbd_conf=$(cat <<EOF
# Generated by emorepro scripts/local-slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)

# write_if_changed FILE MODE CONTENT: 0 if the file changed, 1 if not.
write_if_changed() {
  if [ -f "$1" ] && [ "$(cat "$1")" = "$3" ]; then chmod "$2" "$1"; return 1; fi
  printf '%s\n' "$3" >"$1"; chmod "$2" "$1"
}
slurm_changed=0; dbd_changed=0
write_if_changed /etc/slurm/slurm.conf 644 "$slurm_conf" && slurm_changed=1
write_if_changed /etc/slurm/gres.conf 644 "$gres_conf" && slurm_changed=1
write_if_changed /etc/slurm/slurmdbd.conf 600 "$slurmdbd_conf" && dbd_changed=1   # slurmdbd insists on 0600

# A config change only takes effect after a restart. We restart daemons we
# started; a foreign running Slurm we refuse to touch.
if [ $slurm_changed = 1 ] || [ $dbd_changed = 1 ]; then
  for d in slurmd slurmctld slurmdbd; do
    [ $d = slurmdbd ] && [ $dbd_changed = 0 ] && continue
    if ours $d; then stop_ours $d
    elif running $d; then die "Slurm config changed but a $d not started by this script is running; stop it first"
    fi
  done
fi

# ---------------------------------------------------------------- munged ---
if ! munge_ok 2>/dev/null; then
  running munged && die "a munged is running but munge/unmunge fails" /var/log/munge/munged.log
  mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
  chmod 400 /etc/munge/munge.key
  start_daemon munged /var/log/munge/munged.out \
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
  wait_until "$TIMEOUT" munged /var/log/munge/munged.log munge_ok
fi

# --------------------------------------------------------------- MariaDB ---
if ! mariadb_ok >/dev/null 2>&1; then
  running mariadbd && die "a mariadbd is running but does not answer on $DB_SOCKET" /var/log/mysql/error.log
  mkdir -p /run/mysqld /var/log/mysql
  chown mysql:mysql /run/mysqld /var/log/mysql
  [ -d /var/lib/mysql/mysql ] ||
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>/var/log/mysql/install.log 2>&1 ||
    die "mariadb-install-db failed" /var/log/mysql/install.log
  # Socket only: no TCP port that could clash with anything else on the machine.
  start_daemon mariadbd /var/log/mysql/mariadbd.out \
    /usr/sbin/mariadbd --user=mysql --skip-networking --socket="$DB_SOCKET" \
    --pid-file=/run/mysqld/mysqld.pid --log-error=/var/log/mysql/error.log \
    --innodb-buffer-pool-size=128M
  wait_until "$TIMEOUT" MariaDB /var/log/mysql/error.log mariadb_ok
fi
# Idempotent: database and user for slurmdbd (MariaDB's root logs in via the socket).
mariadb --socket="$DB_SOCKET" -e "
  CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';" ||
  die "could not create the accounting database" /var/log/mysql/error.log

# -------------------------------------------------------------- slurmdbd ---
if ! dbd_ok >/dev/null 2>&1; then
  running slurmdbd && die "a slurmdbd is running but sacctmgr cannot reach it" /var/log/slurm/slurmdbd.log
  start_daemon slurmdbd /var/log/slurm/slurmdbd.out slurmdbd -D
  wait_until "$TIMEOUT" slurmdbd /var/log/slurm/slurmdbd.log dbd_ok
fi

# ------------------------------------------------------ slurmctld, slurmd ---
if ! ctld_ok 2>/dev/null; then
  running slurmctld && die "a slurmctld is running but does not answer scontrol ping" /var/log/slurm/slurmctld.log
  start_daemon slurmctld /var/log/slurm/slurmctld.out slurmctld -D
  wait_until "$TIMEOUT" slurmctld /var/log/slurm/slurmctld.log ctld_ok
fi
if ! ours slurmd && ! running slurmd; then
  # -N: register as node `localhost` whatever the hostname is.
  start_daemon slurmd /var/log/slurm/slurmd.out slurmd -D -N localhost
fi

# --------------------------------------------------- wait for an idle node ---
end=$(( $(date +%s) + TIMEOUT ))
while :; do
  st=$(node_state)
  case "$st" in
    idle*|mixed*|allocated*|completing*) break ;;
    # e.g. "down" after an unclean stop: ReturnToService=2 usually fixes it, but
    # resume explicitly so we never wait for it.
    down*|drain*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
  esac
  [ "$(date +%s)" -lt "$end" ] ||
    die "node localhost not usable after ${TIMEOUT}s (state '$st')" /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log
  sleep 0.5
done
# slurmctld registers the cluster (and the root account/user) in slurmdbd on
# start; the plugin's sacct status queries need it.
wait_until "$TIMEOUT" "cluster $CLUSTER in slurmdbd" /var/log/slurm/slurmctld.log \
  bash -c "sacctmgr -n -P show cluster format=cluster | grep -qx $CLUSTER"

sinfo
log "local Slurm is up (cluster $CLUSTER; pid records in $STATE_DIR)"
