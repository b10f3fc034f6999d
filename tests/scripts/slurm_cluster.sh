#!/usr/bin/env bash
# A real one-node Slurm cluster in a folder, for tests: munged, slurmctld and slurmd of the
# machine's slurm-wlm and munge packages, started as root with configuration, key, state, spool,
# logs and pid files all inside DIR, on ports found free, so it touches nothing of a system
# cluster (/etc/slurm, /etc/munge, /run/munge) and several can live side by side.
#
#   slurm_cluster.sh start DIR   writes DIR/slurm.conf and starts the daemons; returns once the node
#                                is idle and prints SLURM_CONF=DIR/slurm.conf (export it for sbatch,
#                                squeue, scontrol: the clients read no other configuration)
#   slurm_cluster.sh stop DIR    cancels the cluster's jobs, stops its daemons (by their pid files)
#                                and removes what start wrote except DIR/log/
#
# No cgroups (proctrack/linuxproc, task/none), no accounting database, one partition "debug" with
# this machine's CPUs and memory as `slurmd -C` sees them.
#
# Exit codes: 0 done; 2 usage; 77 the cluster cannot run here (not root, a program missing, a
# daemon that did not start or a node that did not become idle), with the reason on stderr: tests
# report that as a skip (CTest's SKIP_RETURN_CODE), never as a pass.
set -uo pipefail

readonly kCannotRun=77
usage() {
  echo "usage: slurm_cluster.sh start|stop DIR" >&2
  exit 2
}
cannot_run() {
  echo "slurm_cluster.sh: cannot run a Slurm cluster here: $*" >&2
  exit "$kCannotRun"
}

[[ $# -eq 2 ]] || usage
action=$1
dir=$2
[[ $action == start || $action == stop ]] || usage
[[ $action == stop && ! -d $dir ]] && exit 0
mkdir -p "$dir" || cannot_run "cannot create the folder $dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
socket=$dir/munge/munge.socket
export SLURM_CONF=$conf

# The pid of a daemon from its pid file, when that process still lives.
live_pid() {
  local file=$1 pid
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# SIGTERM to every daemon at once (slurmctld takes a few seconds to save its state and stop),
# then SIGKILL to any still there after 10 s.
stop_daemons() {
  local file pid pids=()
  for file in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    pid=$(live_pid "$file") && pids+=("$pid") && kill -TERM "$pid" 2>/dev/null
  done
  for _ in $(seq 100); do
    local alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [[ ${#alive[@]} -eq 0 ]] && return 0
    pids=("${alive[@]}")
    sleep 0.1
  done
  echo "slurm_cluster.sh: daemons ${pids[*]} did not stop within 10 s of SIGTERM; killing them" >&2
  kill -KILL "${pids[@]}" 2>/dev/null
}

stop_cluster() {
  # Jobs first: their slurmstepd processes outlive slurmd, and end only with their job.
  if [[ -f $conf ]] && live_pid "$dir/slurmctld.pid" >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 100); do
      [[ -z $(squeue --noheader --format=%i 2>/dev/null) ]] && break
      sleep 0.1
    done
  fi
  stop_daemons
  rm -rf "$dir/munge" "$dir/state" "$dir/spool" "$dir/slurm.conf" "$dir/slurmd.pid" "$dir/slurmctld.pid"
}

if [[ $action == stop ]]; then
  stop_cluster
  exit 0
fi

# ---- start ----
[[ $(id -u) -eq 0 ]] || cannot_run "not root (uid $(id -u)); slurmd must run as root to start jobs as their users"
for program in munged munge unmunge slurmctld slurmd sinfo squeue scontrol scancel sbatch ss; do
  command -v "$program" >/dev/null ||
    cannot_run "'$program' is not installed; install the packages slurm-wlm and munge (tools/setup.sh --test)"
done
if live_pid "$dir/slurmctld.pid" >/dev/null; then
  echo "slurm_cluster.sh: a cluster already runs in $dir; stop it first (slurm_cluster.sh stop $dir)" >&2
  exit 2
fi

# The log tail of a daemon that failed, then everything stopped again.
give_up() {
  local why=$1 log=$2
  echo "slurm_cluster.sh: $why; the end of $log:" >&2
  tail -n 15 "$log" >&2 2>/dev/null
  stop_cluster
  cannot_run "$why (see $log)"
}

mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
# munged refuses a key or socket folder that others may write; clients need to reach the socket.
chmod 711 "$dir/munge"
head -c 1024 /dev/urandom >"$dir/munge/munge.key" && chmod 400 "$dir/munge/munge.key"
# --force: munged declines to run as root, or under a world-writable /tmp, without it.
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" 2>>"$dir/log/munged.log" ||
  give_up "munged did not start" "$dir/log/munged.log"
munge --socket="$socket" --no-input 2>>"$dir/log/munged.log" | unmunge --socket="$socket" >/dev/null 2>&1 ||
  give_up "munged does not answer on $socket" "$dir/log/munged.log"

# Two TCP ports nothing listens on (another cluster of this script, a system slurmctld on 6817).
free_port() {
  local port
  for port in $(shuf -i 20000-45000 -n 200); do
    [[ " $* " == *" $port "* ]] && continue
    [[ -z $(ss -Hltn "sport = :$port") ]] && echo "$port" && return 0
  done
  return 1
}
if ! ctld_port=$(free_port) || ! slurmd_port=$(free_port "$ctld_port"); then
  cannot_run "no free TCP port in 20000-45000"
fi

host=$(hostname -s)
# `slurmd -C` prints this machine's node line (CPUs, sockets, cores, RealMemory); a node declared
# with more than it has would be drained as soon as slurmd registers.
node_line=$(slurmd -C 2>/dev/null | head -1)
[[ $node_line == NodeName=* ]] || cannot_run "'slurmd -C' did not describe this machine (got '$node_line')"
cat >"$conf" <<EOF
# Written by tests/scripts/slurm_cluster.sh: a one-node test cluster; everything lives in $dir.
ClusterName=labtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: processes are tracked through /proc, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Pending jobs are looked at every second (default 60 s), so that a dependent job starts as soon
# as its dependency is met; finished jobs stay visible to scontrol for 5 minutes.
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

node=${node_line%% *}
node=${node#NodeName=}
slurmctld -f "$conf" -i 2>>"$dir/log/slurmctld.log" || give_up "slurmctld did not start" "$dir/log/slurmctld.log"
slurmd -f "$conf" -N "$node" 2>>"$dir/log/slurmd.log" || give_up "slurmd did not start" "$dir/log/slurmd.log"
state=""
for _ in $(seq 150); do
  state=$(sinfo --noheader --nodes="$node" --format=%t 2>/dev/null)
  [[ $state == idle ]] && break
  live_pid "$dir/slurmctld.pid" >/dev/null || give_up "slurmctld exited" "$dir/log/slurmctld.log"
  live_pid "$dir/slurmd.pid" >/dev/null || give_up "slurmd exited" "$dir/log/slurmd.log"
  sleep 0.2
done
[[ $state == idle ]] || give_up "node $node is '${state:-unknown}', not idle, 30 s after start" "$dir/log/slurmd.log"
echo "SLURM_CONF=$conf"
