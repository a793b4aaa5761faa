#!/usr/bin/env bash
# orch job 20260101-000000-0001: one Slurm task per node. Finds this node's rank, runs its wrapper (rank-N/launch.sh, as
# on SSH: env.sh, ORCH_JOB_ID tag, pgid, exit_code, log), then sweeps the job tag on this node: processes that
# left the step (setsid, re-parented to PID 1) escape Slurm's own cleanup under proctrack/linuxproc.
ROOT=/shared/orch/jobs/20260101-000000-0001
rank=0
for name in $(cat "$ROOT/order"); do
  [ "$name" = "$SLURMD_NODENAME" ] && break
  rank=$((rank + 1))
done
dir="$ROOT/rank-$rank"
[ -d "$dir" ] || { echo "orch: node $SLURMD_NODENAME is not in the rank order $(cat "$ROOT/order")" >&2; exit 95; }
echo "$SLURMD_NODENAME" > "$dir/node"
export ORCH_NODE="$SLURMD_NODENAME"
# orch stopped this rank alone (orch_stop): its end is not a failure that should end the other ranks
[ -f "$dir/orch_stop" ] && exit 0
trap 'stopping=1' TERM INT
env ORCH_JOB_ID=20260101-000000-0001 setsid bash "$dir/launch.sh" >"$dir/log" 2>&1 </dev/null &
child=$!
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
env -u ORCH_JOB_ID bash "$dir/stop.sh" >/dev/null 2>&1
[ -f "$dir/exit_code" ] && rc=$(cat "$dir/exit_code")
[ -f "$dir/orch_stop" ] && rc=0
exit "$rc"
