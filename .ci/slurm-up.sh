#!/usr/bin/env bash
# Bring up a one-node Slurm cluster on localhost (Debian, run as root, no systemd needed):
# munge + slurmctld + slurmd on this machine, one partition `debug`. Idempotent: exits at
# once when the node already answers as idle/mixed/allocated. Used by the Slurm executor tests.
set -euo pipefail
start=$SECONDS
node=$(hostname -s)

node_state() { timeout 5 sinfo -h -n "$node" -o %t 2>/dev/null | head -1 || true; }

# Already up? (idle, or busy with someone's jobs.)
if command -v sinfo >/dev/null && [[ "$(node_state)" =~ ^(idle|mix|alloc) ]]; then
  echo "slurm: node $node already up ($(node_state))"
  exit 0
fi

# --- packages --------------------------------------------------------------------------
missing=()
for p in munge slurm-wlm; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- munge: key, runtime dir, daemon (as the munge user) ------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge # socket dir; /run is empty after boot
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- slurm.conf -------------------------------------------------------------------------
cpus=$(nproc)
avail_mb=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
mem=$((avail_mb * 9 / 10))       # a bit under what is free; slurmd rejects more than it has
defmem=$((mem / cpus))           # jobs without --mem get this per CPU, not the whole node
install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
cat >/etc/slurm/slurm.conf <<EOF
# Written by .ci/slurm-up.sh: one node, no accounting, no cgroups.
ClusterName=pipe-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$defmem
ReturnToService=2
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE DefaultTime=60 State=UP
EOF

# --- daemons: restart ours (by pid file) so they read this config ------------------------
for d in slurmd slurmctld; do
  pidfile=/run/slurm/$d.pid
  if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile"); kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
done
/usr/sbin/slurmctld # daemonizes
/usr/sbin/slurmd

# --- wait for the node (60 s), resuming it if it registers down/drained ------------------
state=""
for _ in $(seq 60); do
  state=$(node_state)
  case "$state" in
    idle*|mix*|alloc*) break ;;
    down*|drain*|drng*|fail*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
if [[ ! "$state" =~ ^(idle|mix|alloc) ]]; then
  echo "slurm: node $node did not come up (state: '${state:-none}')" >&2
  for log in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
    echo "--- $log" >&2; tail -n 30 "$log" >&2 2>/dev/null || true
  done
  exit 1
fi
echo "slurm: node $node up ($state, $cpus CPUs, ${mem} MB) in $((SECONDS - start)) s"
