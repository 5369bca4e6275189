#!/usr/bin/env bash
# A single-node Slurm 22.05 for the tests, from Debian 12's packages, without systemd or
# cgroups: munge, slurmctld and slurmd run as root with their keys, sockets, state, spool
# and logs in one folder, and the node has two fake GPUs (character devices).
#
#   scripts/slurm-test-cluster.sh up     start it (idempotent); prints `export SLURM_CONF=…`
#   scripts/slurm-test-cluster.sh down   stop it
#   scripts/slurm-test-cluster.sh env    print the exports for a running cluster
#
# The folder is $IMAGELAB_SLURM_DIR (default ~/.cache/imagelab/slurm-test). Client commands
# (sbatch, squeue, scancel …) find the cluster through SLURM_CONF. Every finished job is
# recorded in jobcomp.txt there (JobCompType=jobcomp/filetxt), since there is no slurmdbd.
set -euo pipefail

dir="${IMAGELAB_SLURM_DIR:-$HOME/.cache/imagelab/slurm-test}"
ctld_port="${IMAGELAB_SLURM_PORT:-16817}"
conf="$dir/slurm.conf"
say() { printf '\033[1m[slurm-test]\033[0m %s\n' "$*" >&2; }

need_packages() {
  local missing=()
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  if [ "$(id -u)" = 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing packages; run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Two GPUs for gres.conf: Slurm 22.05 drops a GPU without File= and refuses plain files, so
# make character devices (NVIDIA's major 195), or borrow existing ones where mknod is denied.
fake_gpus() {
  mkdir -p "$dir/dev"
  local files=()
  for i in 0 1; do
    local node="$dir/dev/nvidia$i"
    [ -c "$node" ] || mknod "$node" c 195 "$i" 2>/dev/null || true
    if [ -c "$node" ]; then files+=("$node"); fi
  done
  [ "${#files[@]}" -eq 2 ] || files=(/dev/null /dev/zero)
  printf 'AutoDetect=off\n' >"$dir/gres.conf"
  for f in "${files[@]}"; do printf 'Name=gpu File=%s\n' "$f" >>"$dir/gres.conf"; done
}

# Addresses are given as 127.0.0.1, so the cluster works where the host name does not
# resolve (containers).
write_conf() {
  local host cpus
  host="$(hostname -s)"
  cpus="$(nproc)"
  cat >"$conf" <<EOF
ClusterName=imagelab-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=600
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$host NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

print_env() {
  echo "export SLURM_CONF=$conf"
}

up() {
  need_packages
  if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" && alive "$dir/munged.pid"; then
    print_env
    return
  fi
  down >/dev/null 2>&1 || true
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
  # munged insists on private keys and on directories nobody else may write to.
  chmod 755 "$dir" "$dir/munge"
  [ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket.2" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
  fake_gpus
  write_conf
  export SLURM_CONF="$conf"
  # -c: a fresh controller state each time, so earlier runs' jobs never linger.
  slurmctld -c -f "$conf"
  slurmd -f "$conf"
  for _ in $(seq 1 100); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then
      say "up: $(sinfo -h -o '%N %t %G')"
      print_env
      return
    fi
    sleep 0.2
  done
  say "the node did not become idle; logs in $dir"
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  exit 1
}

down() {
  for name in slurmd slurmctld munged; do
    local pidfile="$dir/$name.pid"
    if alive "$pidfile"; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$pidfile" || break; sleep 0.1; done
      alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
