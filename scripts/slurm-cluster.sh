#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests and CI (root, no systemd).
#
#   scripts/slurm-cluster.sh install   apt-get the Debian packages (slurmctld slurmd slurm-client munge)
#   scripts/slurm-cluster.sh start     write /etc/slurm/{slurm,gres}.conf, start munged, slurmctld, slurmd
#   scripts/slurm-cluster.sh status    daemons started by this script and `sinfo`
#   scripts/slurm-cluster.sh stop      stop only the daemons this script started (by pid), remove its configs
#
# Partitions: `cpu` (default) and `gpu`, both on this node; the node has $FAKE_GPUS fake GPUs
# (character devices, so that SLURM sets CUDA_VISIBLE_DEVICES). No slurmdbd: `sacct` does not work,
# clients must query job state with squeue (MinJobAge keeps finished jobs visible to it).
set -euo pipefail

STATE=${SLURM_CLUSTER_DIR:-/tmp/cgrseg-slurm}
FAKE_GPUS=${FAKE_GPUS:-2}
MIN_JOB_AGE=${MIN_JOB_AGE:-3600}
# an hour: the demo DAG through SLURM takes over 10 minutes on a loaded 2-core CI machine, and its test
# reads every job's partition back from squeue at the end
CONF_DIR=/etc/slurm
MARKER="# written by cgrseg scripts/slurm-cluster.sh"
PACKAGES="slurmctld slurmd slurm-client munge"

die() { echo "slurm-cluster: error: $*" >&2; exit 1; }
log() { echo "slurm-cluster: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"; }

have_packages() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
  && command -v sbatch >/dev/null && [ -x /usr/sbin/munged ]; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

do_install() {
  need_root
  have_packages && { log "packages already installed"; return; }
  command -v apt-get >/dev/null || die "apt-get not found; install $PACKAGES by hand"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
}

# Our config may replace only a config we wrote ourselves.
check_conf_ours() {
  local f
  for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
    if [ -f "$f" ] && ! grep -qF "$MARKER" "$f"; then
      die "$f exists and was not written by this script; refusing to replace it"
    fi
  done
}

write_conf() {
  local host node gres_lines i
  host=$(hostname -s)
  # `slurmd -C` prints the node's real CPUs/sockets/memory as a NodeName line (plus an UpTime line).
  node=$(slurmd -C | grep '^NodeName=') || die "slurmd -C printed no NodeName line"
  mkdir -p "$STATE"/{state,spool,log,dev} "$CONF_DIR"
  gres_lines=""
  for ((i = 0; i < FAKE_GPUS; i++)); do
    # a copy of /dev/null: a character device, which is what SLURM needs to bind a GPU index
    [ -c "$STATE/dev/nvidia$i" ] || mknod "$STATE/dev/nvidia$i" c 1 3
    gres_lines+="NodeName=$host Name=gpu File=$STATE/dev/nvidia$i"$'\n'
  done
  cat > "$CONF_DIR/slurm.conf" <<EOF
$MARKER
ClusterName=cgrseg
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job without --mem takes the whole node's memory and the rest queue behind it
DefMemPerCPU=1024
# no slurmdbd: finished jobs must stay visible to squeue long enough for Snakemake to see them
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
MailProg=/bin/true
GresTypes=gpu
$node Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
  printf '%s\n%s' "$MARKER" "$gres_lines" > "$CONF_DIR/gres.conf"
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running (not ours, left alone)"
    return
  fi
  [ -f /etc/munge/munge.key ] || die "/etc/munge/munge.key missing (reinstall munge)"
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  # munged refuses to run as root; the pid file is written by munged itself
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"
}

wait_node_idle() {
  local i state
  for ((i = 0; i < 60; i++)); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
    case "$state" in
      idle*|mix*|alloc*) return 0 ;;
      down*|drain*|unk*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  die "node did not become idle (state '${state:-none}'); see $STATE/log/"
}

do_start() {
  need_root
  have_packages || die "SLURM packages missing: run '$0 install' (apt-get install $PACKAGES)"
  if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
    log "already running"
    do_status
    return
  fi
  check_conf_ours
  write_conf
  start_munge
  alive "$STATE/slurmctld.pid" || slurmctld -c   # -c: start from a clean job state
  alive "$STATE/slurmd.pid" || slurmd
  wait_node_idle
  log "started (state in $STATE)"
  do_status
}

do_status() {
  local d
  for d in munged slurmctld slurmd; do
    if alive "$STATE/$d.pid"; then echo "$d: running (pid $(cat "$STATE/$d.pid"))"
    else echo "$d: not started by this script"; fi
  done
  sinfo -o '%P %a %D %t %c %m %G' 2>/dev/null || { echo "sinfo: controller not reachable"; return 1; }
}

do_stop() {
  need_root
  local d pid i
  for d in slurmd slurmctld munged; do
    alive "$STATE/$d.pid" || { rm -f "$STATE/$d.pid"; continue; }
    pid=$(cat "$STATE/$d.pid")
    kill "$pid"
    for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && die "$d (pid $pid) did not stop"
    rm -f "$STATE/$d.pid"
    log "stopped $d (pid $pid)"
  done
  for d in slurm.conf gres.conf; do
    if [ -f "$CONF_DIR/$d" ] && grep -qF "$MARKER" "$CONF_DIR/$d"; then rm -f "$CONF_DIR/$d"; fi
  done
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  status) do_status ;;
  stop) do_stop ;;
  *) echo "usage: $0 install|start|status|stop" >&2; exit 2 ;;
esac
