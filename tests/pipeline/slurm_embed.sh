#!/usr/bin/env bash
# pipeline.slurm_embed — `slidestream run embed.conf --slurm --submit` on a one-node Slurm
# brought up inside the test (munged, slurmctld and slurmd from Debian's munge and slurm-wlm,
# with a generated slurm.conf in a temporary directory): the job completes, its workers ran as
# srun steps on the node, and its embedding cache equals, bit for bit, a local run of the same
# pipeline (deterministic encoders). Skips, saying why, where Slurm cannot start (not root,
# packages missing, daemons not up within 30 s). Stops the daemons and removes everything.
set -u
ss=${SLIDESTREAM:?}; src=${SS_SOURCE_DIR:?}; py=${SS_PYTHON:-/usr/bin/python3}
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "starting munged, slurmctld and slurmd needs root"
for t in munged slurmctld slurmd sbatch scontrol sinfo srun; do
  command -v "$t" >/dev/null || skip "$t not found (Debian packages slurm-wlm and munge)"
done
"$py" -c "import h5py, numpy" 2>/dev/null || skip "$py has no h5py/numpy"

d=$(mktemp -d /tmp/ss-slurm.XXXXXX)
chmod 755 "$d"
export SLURM_CONF=$d/etc/slurm.conf
cleanup() {
  [ -s "$d/slurmd.pid" ] && kill "$(cat "$d/slurmd.pid")" 2>/dev/null
  [ -s "$d/slurmctld.pid" ] && kill "$(cat "$d/slurmctld.pid")" 2>/dev/null
  [ -S "$d/munge.sock" ] && munged --stop --socket="$d/munge.sock" >/dev/null 2>&1
  sleep 1
  for f in slurmd slurmctld munged; do # whatever did not stop on its own
    [ -s "$d/$f.pid" ] && kill -9 "$(cat "$d/$f.pid")" 2>/dev/null
  done
  rm -rf "$d"
}
trap cleanup EXIT

# --- a one-node Slurm on this machine --------------------------------------------------------
mkdir -p "$d/etc" "$d/state" "$d/spool"
head -c 1024 /dev/urandom > "$d/munge.key" && chmod 600 "$d/munge.key"
munged --force --socket="$d/munge.sock" --key-file="$d/munge.key" --log-file="$d/munged.log" \
  --pid-file="$d/munged.pid" --seed-file="$d/munged.seed" \
  || skip "munged did not start: $(tail -n 3 "$d/munged.log" 2>/dev/null)"
ports=$("$py" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
read -r ctld_port d_port <<< "$ports"
node=$(hostname -s)
getent hosts "$node" >/dev/null || skip "this machine's name '$node' does not resolve"
cat > "$SLURM_CONF" <<EOF
ClusterName=sstest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge.sock
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" -i || skip "slurmctld did not start: $(tail -n 3 "$d/slurmctld.log" 2>/dev/null)"
slurmd -f "$SLURM_CONF" -N "$node" || skip "slurmd did not start: $(tail -n 3 "$d/slurmd.log" 2>/dev/null)"
up=0
for i in $(seq 1 60); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && { up=1; break; }
  sleep 0.5
done
if [ $up -eq 0 ]; then
  tail -n 5 "$d/slurmctld.log" "$d/slurmd.log" 2>/dev/null
  skip "slurmctld/slurmd did not bring node $node up within 30 s (state: $(sinfo -h -o %t 2>&1))"
fi
echo "Slurm up: node $node, slurmctld port $ctld_port, slurmd port $d_port"

# --- the same small pipeline, locally and through Slurm --------------------------------------
args=(size=3000 encoders=2 deterministic=--deterministic)
"$ss" run "$src/pipelines/embed.conf" rundir="$d/local" "${args[@]}" --quiet > "$d/local.out" 2>&1 \
  || { cat "$d/local.out"; echo "FAIL: the local run failed"; exit 1; }
out=$("$ss" run "$src/pipelines/embed.conf" rundir="$d/slurm" "${args[@]}" --slurm --nodes 1 --submit 2>&1) \
  || { echo "$out"; echo "FAIL: run --slurm --submit failed"; exit 1; }
echo "$out"
job=$(sed -n 's/^submitted batch job \([0-9][0-9]*\).*/\1/p' <<< "$out")
[ -n "$job" ] || { echo "FAIL: no job id in the output of --submit"; exit 1; }
grep -q -- "--slurm-job" "$d/slurm/slurm.sh" || { echo "FAIL: the script does not run --slurm-job"; exit 1; }
state=""
for i in $(seq 1 300); do
  state=$(scontrol show job "$job" -o 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL) break;; esac
  sleep 0.5
done
echo "job $job: $state"
cat "$d/slurm/slurm-$job.out" 2>/dev/null | tail -n 8
[ "$state" = COMPLETED ] || { tail -n 20 "$d/slurmd.log"; echo "FAIL: job $job ended $state"; exit 1; }
grep -q '"status": "ok"' "$d/slurm/report.json" || { echo "FAIL: report.json is not ok"; exit 1; }
# The workers ran on the node as srun steps (named stage.node.replica); the stable stages once.
for w in "encoder.$node.0" "encoder.$node.1" "cropper.$node.0" "cropper.$node.1" tiler bags cache; do
  grep -q "\"name\": \"$w\"" "$d/slurm/report.json" || { echo "FAIL: no stage $w in the report"; exit 1; }
done
"$py" "$src/tests/pipeline/check_cache.py" check "$d/slurm/cache" "$d/slurm/bags" || exit 1
"$py" "$src/tests/pipeline/check_cache.py" same "$d/local/cache" "$d/slurm/cache" --exact || exit 1
echo "PASS: the Slurm job's cache equals the local run's"
