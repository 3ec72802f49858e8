#!/usr/bin/env bash
# scripts/local-slurm-down.sh - stop the single-node Slurm started by
# scripts/local-slurm-up.sh.
#
# Stops ONLY the daemons local-slurm-up.sh recorded in $STATE_DIR (pid + start
# time + name, so a recycled pid is never killed), newest first:
# slurmd, slurmctld, slurmdbd, mariadbd, munged. Daemons it did not start are
# left alone. Idempotent: with nothing running it just says so.
#
# Usage:   sudo scripts/local-slurm-down.sh
#          sudo LOCAL_SLURM_PURGE=1 scripts/local-slurm-down.sh
#
# LOCAL_SLURM_PURGE=1 also deletes the cluster's state: Slurm's state and spool
# directories, its logs, the generated /etc/slurm/*.conf and the accounting
# database (dropped through MariaDB, so InnoDB's dictionary stays consistent).
# The next `up` then starts from job id 1 with empty accounting. Packages and
# the munge key are kept.
set -uo pipefail

STATE_DIR=/run/emorepro-local-slurm
DB_SOCKET=/run/mysqld/mysqld.sock
PURGE="${LOCAL_SLURM_PURGE:-0}"

log() { echo "[local-slurm-down] $*"; }

[ "$(id -u)" = 0 ] || { echo "local-slurm-down: must run as root" >&2; exit 1; }

# Same helpers as in local-slurm-up.sh.
starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  set -- $stat
  echo "${20}"
}
# ours NAME: print the recorded pid if it is still the daemon we started.
ours() {
  local rec=$STATE_DIR/$1.pid pid st comm
  [ -s "$rec" ] || return 1
  read -r pid st comm <"$rec" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] && [ "$(starttime "$pid")" = "$st" ] && echo "$pid"
}

# stop NAME: SIGTERM our daemon, wait up to 15 s, then SIGKILL.
stop() {
  local name=$1 pid
  if ! pid=$(ours "$name"); then
    [ -e "$STATE_DIR/$name.pid" ] && log "$name: recorded process is gone"
    rm -f "$STATE_DIR/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then
    log "$name (pid $pid) ignored SIGTERM for 15 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.5
  fi
  rm -f "$STATE_DIR/$name.pid"
  log "stopped $name (pid $pid)"
}

# 1. Cancel all jobs while slurmctld (ours) still runs, so no job or slurmstepd
#    outlives the cluster. Bounded: jobs get SIGTERM, then SIGKILL after KillWait.
if ours slurmctld >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"
    scancel --full $jobs 2>/dev/null || true
    for _ in $(seq 1 60); do
      [ -z "$(squeue -h -t PD,R,CG,S -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi

# 2. Daemons, in reverse start order.
stop slurmd
stop slurmctld
stop slurmdbd
if [ "$PURGE" = 1 ]; then
  if [ -S "$DB_SOCKET" ] && mariadb --socket="$DB_SOCKET" -e 'DROP DATABASE IF EXISTS slurm_acct_db'; then
    log "dropped accounting database slurm_acct_db"
  else
    log "warning: MariaDB not reachable, accounting database NOT dropped (run up, then purge again)"
  fi
fi
stop mariadbd
stop munged

# 3. Optional purge of Slurm state.
if [ "$PURGE" = 1 ]; then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/log/slurm/*
  # only the config files our up script generated
  for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf; do
    if grep -qs 'emorepro scripts/local-slurm-up.sh' "$f"; then rm -f "$f"; fi
  done
  log "purged Slurm state, spool, logs and generated config"
fi
log "done"
