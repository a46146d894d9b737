#!/usr/bin/env bash
# A one-node Slurm cluster (Debian's slurm-wlm 22.05 + munge) for the training bridge's HPC adapter
# and its tests: munged, slurmctld and slurmd, run as root with their conf, state, spool, logs and pid
# files under .cache/slurm, so nothing of the host's /etc/slurm is read or changed.
#
#   bash scripts/slurm.sh start   # install if needed (root + apt), write the conf, start, wait for the node to be idle
#   bash scripts/slurm.sh env     # prints: export SLURM_CONF=<abs>/.cache/slurm/slurm.conf
#   bash scripts/slurm.sh stop    # stops the daemons this script started (quiet when none)
#   bash scripts/slurm.sh status  # exit status 0 when the controller answers and the node takes jobs
#
# Every Slurm command (sbatch, squeue, scontrol) reads SLURM_CONF, so `eval "$(bash scripts/slurm.sh env)"`
# points them at this cluster.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/slurm"
conf="$cache/slurm.conf"
state="$cache/state"
spool="$cache/spool"
logs="$cache/logs"
run="$cache/run"
munge_key="/etc/munge/munge.key"
# munged's socket stays at Debian's default, which Slurm's auth/munge plugin uses unless told otherwise.
munge_socket="/run/munge/munge.socket.2"
munge_pidfile="$run/munged.pid"
ctld_pidfile="$run/slurmctld.pid"
slurmd_pidfile="$run/slurmd.pid"
start_timeout_s=30
# shellcheck source=scripts/lib/pidfile.sh
. "$root/scripts/lib/pidfile.sh"

die() {
  echo "slurm.sh: $*" >&2
  exit 1
}

note() {
  echo "slurm.sh: $*" >&2
}

ensure_packages() {
  local missing=()
  command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ] || missing+=(slurm-wlm)
  command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || missing+=(munge)
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 ||
    die "missing ${missing[*]}; install them (Debian: apt-get install slurm-wlm munge) or run this as root with apt-get"
  note "installing ${missing[*]} (apt-get)"
  # Package lists are usually there already; update only when the install fails without them.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >"$cache/apt.log" 2>&1; then
    note "apt-get install failed; updating the package lists and trying once more"
    apt-get update -qq >>"$cache/apt.log" 2>&1 || { tail -n 5 "$cache/apt.log" >&2; die "apt-get update failed; cannot install ${missing[*]} (full output in $cache/apt.log)"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >>"$cache/apt.log" 2>&1 ||
      { tail -n 5 "$cache/apt.log" >&2; die "apt-get install slurm-wlm munge failed (full output in $cache/apt.log)"; }
  fi
}

# The node's name must be the one slurmd calls itself (its short hostname), or slurmd starts and the
# controller never hears from that node. `slurmd -C` says both the name and the hardware.
node_line() {
  local detected name cpus
  detected="$(/usr/sbin/slurmd -C 2>/dev/null | head -n 1)" || true
  name="$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$detected")"
  cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$detected")"
  [ -n "$name" ] || name="$(hostname -s)"
  [ -n "$cpus" ] || cpus="$(nproc)"
  if [ "$name" != "$(hostname -s)" ]; then
    note "slurmd calls this node $name while hostname -s says $(hostname -s); using slurmd's"
  fi
  echo "$name $cpus"
}

write_conf() {
  local name cpus
  read -r name cpus <<<"$(node_line)"
  mkdir -p "$state" "$spool" "$logs" "$run"
  # slurmctld drops to SlurmUser and then writes its state and log; slurmd stays root.
  chown slurm:slurm "$state" "$logs"
  # MinJobAge=3600: without slurmdbd the controller's memory is the only record of how a job ended, so
  # ended jobs stay listed an hour (the default 300 s is shorter than a bridge restart may take).
  # MaxJobCount=100000: those ended jobs count against the limit (default 10,000), and the bench
  # submits 1,000 a run.
  # KillWait=2: a cancelled or timed-out job gets SIGKILL 2 s after SIGTERM rather than 30 s.
  # OverSubscribe=FORCE:8: each CPU takes up to 8 jobs, so suites running side by side on a 2-CPU
  # machine do not queue behind each other's sleeping jobs.
  # CPUs: the detected count (a node configured with more than it has is drained); RealMemory stays
  # small so no machine is drained for having less.
  cat >"$conf.tmp" <<EOF
# Written by scripts/slurm.sh; rewritten on every start.
ClusterName=arcnet
SlurmctldHost=$name
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
MaxJobCount=100000
KillWait=2
InactiveLimit=0
MessageTimeout=10
SlurmdTimeout=30
SlurmctldTimeout=30
StateSaveLocation=$state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$ctld_pidfile
SlurmdPidFile=$slurmd_pidfile
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$name CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
  mv "$conf.tmp" "$conf"
}

munge_answers() {
  [ -S "$munge_socket" ] && munge -n -S "$munge_socket" 2>/dev/null | unmunge -S "$munge_socket" >/dev/null 2>&1
}

ensure_munge_key() {
  [ -s "$munge_key" ] && return 0
  note "creating $munge_key"
  install -d -o munge -g munge -m 0700 /etc/munge
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile="$munge_key" --force >/dev/null
  else
    dd if=/dev/urandom of="$munge_key" bs=1 count=1024 status=none
  fi
  chown munge:munge "$munge_key"
  chmod 0400 "$munge_key"
}

start_munge() {
  munge_answers && return 0
  ensure_munge_key
  # munged refuses a socket or log directory that others may write to, and runs as the munge user.
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  install -d -m 0755 "$run"
  touch "$munge_pidfile"
  chown munge:munge "$munge_pidfile"
  runuser -u munge -- /usr/sbin/munged --socket="$munge_socket" --pid-file="$munge_pidfile" ||
    die "munged did not start (see /var/log/munge/munged.log)"
  local deadline=$((SECONDS + 10))
  until munge_answers; do
    [ "$SECONDS" -lt "$deadline" ] || die "munged started but does not answer on $munge_socket within 10 s (see /var/log/munge/munged.log)"
    sleep 0.1
  done
}

ctld_pid() { owned_pid "$ctld_pidfile" "slurmctld"; }
slurmd_pid() { owned_pid "$slurmd_pidfile" "slurmd"; }
munged_pid() { owned_pid "$munge_pidfile" "munged"; }

# The node's state as sinfo prints it (idle, mixed, allocated, down*, drained, ...); empty when the
# controller does not answer.
node_state() {
  SLURM_CONF="$conf" timeout 5 sinfo --noheader --format=%T 2>/dev/null | head -n 1
}

node_name() {
  sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$conf"
}

takes_jobs() {
  [ -f "$conf" ] || return 1
  case "$(node_state)" in
    idle | mixed | allocated | completing) return 0 ;;
    *) return 1 ;;
  esac
}

show_logs() {
  local file
  for file in "$logs/slurmctld.log" "$logs/slurmd.log"; do
    [ -f "$file" ] || continue
    echo "slurm.sh: ...last lines of $file:" >&2
    tail -n 10 "$file" >&2 || true
  done
}

start_daemons() {
  # -f: this project's conf, not /etc/slurm's. Both fork into the background and write their pid files.
  if ! ctld_pid >/dev/null; then
    rm -f "$ctld_pidfile"
    /usr/sbin/slurmctld -f "$conf" || { show_logs; die "slurmctld did not start"; }
  fi
  if ! slurmd_pid >/dev/null; then
    rm -f "$slurmd_pidfile"
    /usr/sbin/slurmd -f "$conf" || { show_logs; die "slurmd did not start"; }
  fi
}

wait_for_node() {
  local deadline=$((SECONDS + start_timeout_s)) resumed=0 current
  until takes_jobs; do
    current="$(node_state)"
    # A node that was down when the controller last saved its state comes back down or drained; it
    # is ours alone, so put it back in service once.
    if [ "$resumed" -eq 0 ] && [[ "$current" =~ ^(down|drain|drained|draining) ]]; then
      SLURM_CONF="$conf" scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 || true
      resumed=1
    fi
    if ! ctld_pid >/dev/null || ! slurmd_pid >/dev/null; then
      show_logs
      die "slurmctld or slurmd exited while starting"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_logs
      die "the node is '${current:-not listed}' rather than idle after $start_timeout_s s (daemons left running)"
    fi
    sleep 0.2
  done
}

cmd_start() {
  mkdir -p "$cache"
  if takes_jobs; then
    cmd_env
    return 0
  fi
  ensure_packages
  write_conf
  start_munge
  start_daemons
  wait_for_node
  cmd_env
}

cmd_env() {
  echo "export SLURM_CONF=$conf"
}

cmd_stop() {
  local pid
  if pid="$(slurmd_pid)"; then stop_pid "$pid" 10 "slurm.sh: slurmd"; fi
  if pid="$(ctld_pid)"; then stop_pid "$pid" 10 "slurm.sh: slurmctld"; fi
  if pid="$(munged_pid)"; then stop_pid "$pid" 10 "slurm.sh: munged"; fi
  rm -f "$slurmd_pidfile" "$ctld_pidfile" "$munge_pidfile"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) takes_jobs ;;
  *)
    echo "usage: bash scripts/slurm.sh start|stop|status|env" >&2
    exit 2
    ;;
esac
